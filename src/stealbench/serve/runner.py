"""Running the service with uvicorn: blocking (the command) or in a background thread
(notebooks, tests and benchmarks). Loopback is the default address."""

from __future__ import annotations

import contextlib
import threading
import time

DEFAULT_HOST = "127.0.0.1"


def _server(app, host: str, port: int, log_level: str):
    import uvicorn

    return uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False)
    )


def run(app, host: str = DEFAULT_HOST, port: int = 8080, log_level: str = "info") -> None:
    """Serve ``app`` until interrupted."""
    _server(app, host, port, log_level).run()


@contextlib.contextmanager
def background(app, host: str = DEFAULT_HOST, port: int = 0, start_timeout_s: float = 30.0):
    """Serve ``app`` in a daemon thread; yields its base URL (port 0: a free port)."""
    server = _server(app, host, port, "warning")
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the server on {host}:{port} did not start")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()
    try:
        yield f"http://{bound[0]}:{bound[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
