"""A headless Chromium for the tests, driven over the DevTools protocol on a pipe.

Standard library only. Chromium (Debian's ``chromium``) is started with
``--remote-debugging-pipe``: it reads protocol commands from file descriptor 3 and writes
replies and events to descriptor 4, one JSON message per NUL-terminated record. The page's
problems are collected from the moment it starts loading: uncaught exceptions
(``Runtime.exceptionThrown``), ``console.error``/``console.assert`` calls, error entries of the
browser log (a resource that failed to load, a blocked request) and failed network requests.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import signal
import subprocess
import time
from pathlib import Path

PACKAGE = "chromium"  # Debian's package and command
FLAGS = (
    "--headless",
    "--no-sandbox",  # root in a container: the sandbox needs user namespaces
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


class BrowserUnavailable(RuntimeError):
    """Chromium is missing and could not be installed."""


class BrowserNotPossibleHere(BrowserUnavailable):
    """Chromium is missing, and this machine cannot install it (no apt-get, or not root)."""


class BrowserError(RuntimeError):
    """Chromium answered a command with an error, closed the pipe, or did not answer in time."""


def executable() -> str | None:
    return shutil.which(PACKAGE)


def install() -> str:
    """Debian's chromium, installed with apt-get if it is missing; returns the command's path."""
    found = executable()
    if found:
        return found
    if shutil.which("apt-get") is None:
        raise BrowserNotPossibleHere(f"{PACKAGE} is not installed and there is no apt-get")
    if os.geteuid() != 0:
        raise BrowserNotPossibleHere(f"{PACKAGE} is not installed and this is not root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # A failing third-party source makes `update` exit non-zero; Debian's lists may still be fine.
    subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=600)
    run = subprocess.run(
        ["apt-get", "install", "-y", PACKAGE],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    found = executable()
    if run.returncode != 0 or not found:
        raise BrowserUnavailable(
            f"apt-get install {PACKAGE} failed (exit {run.returncode}):\n"
            + (run.stdout + run.stderr)[-3000:]
        )
    return found


class Browser:
    """One headless Chromium with one page; use as a context manager.

    ``problems`` lists every script error, console error and failed load the page met so far,
    as readable lines; ``console`` every other console message and log entry.
    """

    def __init__(
        self,
        profile: Path,
        width: int = 1280,
        height: int = 900,
        timeout: float = 60,
        command: str | None = None,
    ):
        self.profile = Path(profile)
        self.width, self.height, self.timeout = width, height, timeout
        self.command = command or executable()
        if self.command is None:
            raise BrowserUnavailable(f"{PACKAGE} is not installed")
        self.problems: list[str] = []
        self.console: list[str] = []
        self._proc: subprocess.Popen | None = None
        self._buffer = b""
        self._next_id = 0
        self._events: list[dict] = []
        self._session: str | None = None

    # -- process and pipe -------------------------------------------------------------------

    def __enter__(self) -> Browser:
        self.profile.mkdir(parents=True, exist_ok=True)
        to_chrome_r, to_chrome_w = os.pipe()
        from_chrome_r, from_chrome_w = os.pipe()

        def as_fds_3_and_4():
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)

        try:
            self._proc = subprocess.Popen(
                [
                    self.command,
                    *FLAGS,
                    f"--user-data-dir={self.profile}",
                    f"--window-size={self.width},{self.height}",
                    "--remote-debugging-pipe",
                    "about:blank",
                ],
                # fds 3 and 4 made by dup2 must be listed, or close_fds would close them
                pass_fds=(3, 4),
                preexec_fn=as_fds_3_and_4,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # its renderer and helpers die with it in close()
            )
        finally:
            os.close(to_chrome_r)
            os.close(from_chrome_w)
        self._write_fd, self._read_fd = to_chrome_w, from_chrome_r
        try:
            target = self._send("Target.createTarget", {"url": "about:blank"})["targetId"]
            attached = self._send("Target.attachToTarget", {"targetId": target, "flatten": True})
            self._session = attached["sessionId"]
            for domain in ("Page", "Runtime", "Log", "Network"):
                self.send(f"{domain}.enable")
            self.send(
                "Emulation.setDeviceMetricsOverride",
                {
                    "width": self.width,
                    "height": self.height,
                    "deviceScaleFactor": 1,
                    "mobile": False,
                },
            )
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            self._write({"id": self._new_id(), "method": "Browser.close", "params": {}})
        except OSError:
            pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        try:  # helpers left behind (renderer, zygote) share the session started for it
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        for fd in (self._write_fd, self._read_fd):
            os.close(fd)

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _write(self, message: dict) -> None:
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._write_fd, data) :]

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._read_fd], [], [], left)[0]:
                raise BrowserError("chromium did not answer in time")
            chunk = os.read(self._read_fd, 1 << 16)
            if not chunk:
                raise BrowserError(f"chromium closed the pipe (exit {self._proc.poll()})")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message = json.loads(raw)
        if "method" in message:
            self._record(message)
        return message

    def _send(self, method: str, params: dict | None = None, session: str | None = None):
        """Send one command and return its result; events read meanwhile are kept."""
        message = {"id": self._new_id(), "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self._write(message)
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == message["id"]:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self._events.append(reply)

    def send(self, method: str, params: dict | None = None) -> dict:
        """A command to the page (``Domain.method``, as in the DevTools protocol)."""
        return self._send(method, params, self._session)

    def _wait_event(self, name: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for i, event in enumerate(self._events):
                if event.get("method") == name and event.get("sessionId") == self._session:
                    return self._events.pop(i)
            self._events.append(self._read(deadline))

    def _record(self, event: dict) -> None:
        method, params = event["method"], event.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            where = f"{details.get('url', '')}:{details.get('lineNumber', '?')}"
            self.problems.append(f"uncaught exception at {where[-120:]}: {text}")
        elif method == "Runtime.consoleAPICalled":
            args = params.get("args", [])
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in args)
            line = f"console.{params['type']}: {text}"
            (self.problems if params["type"] in ("error", "assert") else self.console).append(line)
        elif method == "Log.entryAdded":
            entry = params["entry"]
            line = (
                f"log {entry['level']} ({entry['source']}): {entry['text']} {entry.get('url', '')}"
            )
            (self.problems if entry["level"] == "error" else self.console).append(line[:500])
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            self.problems.append(
                f"failed load ({params.get('type')}): {params.get('errorText')} "
                f"{params.get('blockedReason', '')}"
            )

    # -- the page ---------------------------------------------------------------------------

    def goto(self, url: str, timeout: float | None = None) -> None:
        """Navigate and wait for the load event (every script and image of the document)."""
        for i in reversed(range(len(self._events))):
            if self._events[i].get("method") == "Page.loadEventFired":
                del self._events[i]
        result = self.send("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise BrowserError(f"navigation to {url} failed: {result['errorText']}")
        self._wait_event("Page.loadEventFired", timeout or self.timeout)

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (promises are awaited)."""
        result = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"{expression[:200]!r} raised {text}")
        return result["result"].get("value")

    def wait_for(self, expression: str, what: str, timeout: float | None = None):
        """Poll ``expression`` until it is truthy; its value. Fails naming ``what``."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                problems = "".join(f"\n  {line}" for line in self.problems) or " none"
                raise BrowserError(
                    f"timed out waiting for {what} ({expression[:200]}); "
                    f"the page's problems so far:{problems}"
                )
            time.sleep(0.1)

    def screenshot(self, path: Path) -> Path:
        """A PNG of the viewport, written to ``path``."""
        shot = self.send("Page.captureScreenshot", {"format": "png"})
        path = Path(path)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path
