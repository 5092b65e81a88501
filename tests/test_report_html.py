"""The Snakemake report of the smoke run, opened in a real headless Chromium.

`snakemake --report` builds one self-contained HTML file (a React app with every result
inlined as a data URI). This test builds it from the session's smoke run and clicks through it
as a reader would: every category and subcategory of the menu, every result's view button and
its description. It checks that no script error, console error or failed load happens on the
way, that every figure of ``results/figures`` is displayed (decoded by the browser at its own
size, the very bytes of the file), that every table and the findings are offered byte for
byte, each with its caption, and it saves screenshots under the test's temporary directory.

Chromium is Debian's ``chromium``: `.ci/run` installs it with apt-get before the tests, and
the test installs it itself where it can (root with apt-get). In CI a missing browser is a
failure; elsewhere the test is skipped only where apt-get cannot install it.
"""

from __future__ import annotations

import base64
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from browser import Browser, BrowserError, BrowserNotPossibleHere, BrowserUnavailable, install
from conftest import run_snakemake

pytestmark = pytest.mark.workflow

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
WIDTH, HEIGHT = 1280, 900

# Page helpers. The report's navigation bar (<nav>) holds the menu, the breadcrumbs and the
# result listings; each listed result has a group of two buttons: view, then description.
JS_CLICK_NAV = """(() => {
  const found = [...document.querySelectorAll('nav a')].filter(a => a.textContent.trim() === %s);
  if (found.length) found[found.length - 1].click();
  return found.length;
})()"""
JS_GROUPS = "document.querySelectorAll('nav div[role=group]')"
JS_CONTENT_IMAGE = "[...document.images].find(img => !img.closest('nav'))"


@dataclass
class Entry:
    """One result as the rendered report shows it."""

    caption: str = ""
    image: str | None = None  # the src of the displayed <img> (a data URI)
    natural_size: tuple[int, int] | None = None
    download: str | None = None  # the href of a download button (a data URI)


@dataclass
class Rendered:
    entries: dict[str, Entry] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    screenshots: list[Path] = field(default_factory=list)
    findings_text: str | None = None  # what the browser gets when it opens the findings link


def decode_data_uri(uri: str) -> bytes:
    head, _, data = uri.partition(",")
    assert head.startswith("data:") and head.endswith(";base64"), head[:100]
    return base64.b64decode(data)


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def chromium() -> str:
    try:
        return install()
    except BrowserUnavailable as err:
        message = f"the report test needs Debian's chromium: {err}"
        if IN_CI or not isinstance(err, BrowserNotPossibleHere):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def report(smoke_workdir, tmp_path_factory) -> Path:
    """`snakemake --report` of the smoke run, as the README runs it."""
    path = tmp_path_factory.mktemp("report") / "report.html"
    run = run_snakemake(smoke_workdir, "--report", str(path))
    assert run.returncode == 0, run.stderr[-4000:]
    return path


class ReportPage:
    """Clicks through a Snakemake 9 report in ``browser``, waiting for React after each click."""

    def __init__(self, browser: Browser, url: str):
        self.browser, self.url = browser, url

    def home(self) -> None:
        self.browser.goto(self.url)
        self.browser.wait_for("document.querySelectorAll('nav a').length > 0", "the menu")

    def click(self, text: str) -> None:
        found = self.browser.evaluate(JS_CLICK_NAV % json.dumps(text))
        assert found, f"the report shows no link {text!r}"

    def open_listing(self, category: str, subcategory: str, several: bool) -> int:
        """Open a category (and subcategory) from the menu; the number of results listed."""
        self.home()
        self.click(category)
        if several:
            self.browser.wait_for(
                f"[...document.querySelectorAll('nav a')].some(a => a.textContent.trim() === "
                f"{json.dumps(subcategory)})",
                f"subcategory {subcategory!r}",
            )
            self.click(subcategory)
        return self.browser.wait_for(f"{JS_GROUPS}.length", f"results of {category}/{subcategory}")

    def view(self, row: int, previous: str | None) -> dict:
        """Press a result's view button: an image is shown, or the button is a download link."""
        href = self.browser.evaluate(f"{JS_GROUPS}[{row}].children[0].getAttribute('href')")
        if href != "#":
            return {"download": href}
        self.browser.evaluate(f"{JS_GROUPS}[{row}].children[0].click()")
        return self.browser.wait_for(
            f"""(() => {{
              const img = {JS_CONTENT_IMAGE};
              if (!img || !img.complete || img.getAttribute('src') === {json.dumps(previous)})
                return null;
              const box = img.getBoundingClientRect();
              return {{image: img.getAttribute('src'), natural: [img.naturalWidth,
                       img.naturalHeight], shown: [box.width, box.height]}};
            }})()""",
            f"the image of result {row}",
        )

    def describe(self, row: int) -> tuple[str, str]:
        """Press a result's description button: its path (last breadcrumb) and caption."""
        self.browser.evaluate(f"{JS_GROUPS}[{row}].children[1].click()")
        path = self.browser.wait_for(
            "document.querySelector('nav ol li.grow')?.textContent", "the result's path"
        )
        caption = self.browser.evaluate(
            "document.querySelector('nav .prose')?.innerText.trim() ?? ''"
        )
        return path, caption


@pytest.fixture(scope="module")
def rendered(chromium, report, tmp_path_factory) -> Rendered:
    """Every result of the report, reached through its menu, as the browser rendered it."""
    shots = tmp_path_factory.mktemp("screenshots")
    out = Rendered()
    with Browser(shots / "profile", WIDTH, HEIGHT, command=chromium) as browser:
        page = ReportPage(browser, report.as_uri())
        page.home()
        # The report's own index of categories: what its menu must offer.
        index = browser.evaluate(
            "Object.fromEntries(Object.entries(categories).map(([c, s]) => [c, Object.keys(s)]))"
        )
        out.screenshots.append(browser.screenshot(shots / "menu.png"))
        for category, subcategories in index.items():
            for subcategory in subcategories:
                several = len(subcategories) > 1
                rows = page.open_listing(category, subcategory, several)
                image = None
                for row in range(rows):
                    shown = page.view(row, image)
                    path, caption = page.describe(row)
                    entry = Entry(caption=caption, download=shown.get("download"))
                    if "image" in shown:
                        image = shown["image"]
                        entry.image, entry.natural_size = image, tuple(shown["natural"])
                        assert min(shown["shown"]) > 0, f"{path} is displayed with no area"
                        name = path.replace("/", "_")
                        out.screenshots.append(browser.screenshot(shots / name))
                    if path.endswith("findings.md") and entry.download:
                        out.findings_text = browser.evaluate(
                            f"fetch({json.dumps(entry.download)}).then(r => r.text())"
                        )
                    assert path not in out.entries, f"{path} is listed twice"
                    out.entries[path] = entry
                    page.click(subcategory if several else category)  # back to the listing
                    browser.wait_for(f"{JS_GROUPS}.length === {rows}", "the listing again")
        out.problems, out.console = list(browser.problems), list(browser.console)
    return out


def test_report_renders_without_script_errors_or_failed_loads(rendered):
    assert rendered.problems == [], "\n".join(rendered.problems)


def test_report_displays_every_figure_at_its_own_size(rendered, smoke_workdir):
    """Each PNG under results/figures is shown as an image the browser decoded, from the
    file's exact bytes, at the file's pixel size."""
    figures = {
        str(p.relative_to(smoke_workdir)): p
        for p in sorted((smoke_workdir / "results/figures").rglob("*.png"))
    }
    assert figures, "the smoke run drew no figure"
    shown = {path: e for path, e in rendered.entries.items() if e.image is not None}
    assert sorted(shown) == sorted(figures)
    for path, entry in shown.items():
        data = figures[path].read_bytes()
        assert decode_data_uri(entry.image) == data, path
        assert entry.natural_size == png_size(data), path


def test_report_offers_the_findings_and_every_table_byte_for_byte(rendered, smoke_workdir):
    findings = smoke_workdir / "results/findings.md"
    entry = rendered.entries.get("results/findings.md")
    assert entry is not None and entry.download, sorted(rendered.entries)
    assert decode_data_uri(entry.download) == findings.read_bytes()
    # opening the link in the browser gives the findings' text
    assert rendered.findings_text == findings.read_text()
    tables = sorted(
        str(p.relative_to(smoke_workdir))
        for p in (smoke_workdir / "results/tables").glob("*.parquet")
    )
    assert tables and set(tables) <= set(rendered.entries), sorted(rendered.entries)
    for path in tables:
        assert (
            decode_data_uri(rendered.entries[path].download) == (smoke_workdir / path).read_bytes()
        )


def test_every_result_is_shown_with_its_rendered_caption(rendered):
    for path, entry in rendered.entries.items():
        assert entry.caption, f"{path}: no description"
        # a caption's template ({{ snakemake.wildcards.victim }}) and markup are rendered
        assert "{{" not in entry.caption and "<p>" not in entry.caption, (path, entry.caption)


def test_screenshots_are_pictures_of_the_report(rendered):
    from PIL import Image

    assert len(rendered.screenshots) >= 2
    for path in rendered.screenshots:
        assert path.stat().st_size > 10_000, path
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size == (WIDTH, HEIGHT), path
            colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
            assert colours is None or len(colours) > 50, f"{path}: {len(colours)} colours"


def test_the_browser_reports_script_errors_console_errors_and_failed_loads(chromium, tmp_path):
    """The harness itself: a page with each kind of problem yields each kind of line."""
    page = tmp_path / "broken.html"
    page.write_text(
        "<html><body><p id=ok>fine</p>"
        "<script>console.error('an error message')</script>"
        "<script>undefinedFunction()</script>"
        "<img src='missing.png'>"
        "</body></html>"
    )
    with Browser(tmp_path / "profile", command=chromium) as browser:
        browser.goto(page.as_uri())
        assert browser.evaluate("document.getElementById('ok').textContent") == "fine"
        with pytest.raises(BrowserError, match="never"):
            browser.wait_for("false", "never", timeout=0.5)
        problems = "\n".join(browser.problems)
    assert "console.error: an error message" in problems
    assert "undefinedFunction is not defined" in problems
    assert "missing.png" in problems and "ERR_FILE_NOT_FOUND" in problems
