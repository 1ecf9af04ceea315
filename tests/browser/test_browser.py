"""The built book in a real browser: every page of _build/html loaded in headless
Chromium.

A page fails on an uncaught JavaScript error, a console error, a request to another
host, a failed request or a broken image. Chapter 2's static explorer must switch
pictures without a kernel. The browser is @sparticuz/chromium driven by puppeteer-core
(tests/browser/, pinned in package.json and package-lock.json; `npm ci` there if
node_modules is missing). The book is served from 127.0.0.1 on a free port by Python's
http.server.

Needs the built book (bash tools/build-book.sh): skipped without it, except under
CI=true or CAM_BOOK_REQUIRE_BUILD=1 (set by tools/run-tests.sh, which builds first),
where a missing build is a failure.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from jupyterlab_harness import ensure_node_modules

ROOT = Path(__file__).resolve().parents[2]
HTML = ROOT / "_build" / "html"
HARNESS = ROOT / "tests" / "browser"
CHAPTER_2 = "notebooks/02_principle.html"
IMAGE_BUDGET = 4 * 2**20  # bytes of images on chapter 2 (inline and files)
SKIP_DIRS = {
    "_static",
    "_sources",
    "_images",
    "widgets",
    "mathjax",
    "_sphinx_design_static",
}


def pages() -> list[str]:
    found = []
    for page in sorted(HTML.rglob("*.html")):
        relative = page.relative_to(HTML)
        if relative.parts[0] in SKIP_DIRS:
            continue
        found.append(relative.as_posix())
    return found


@pytest.fixture(scope="module")
def built() -> Path:
    if not (HTML / "index.html").exists():
        message = f"no built book at {HTML}: run bash tools/build-book.sh first"
        required = (
            os.environ.get(name, "").lower() in ("1", "true", "yes")
            for name in ("CI", "CAM_BOOK_REQUIRE_BUILD")
        )
        if any(required):
            pytest.fail(message)
        pytest.skip(message)
    return HTML


@pytest.fixture(scope="module")
def harness() -> Path:
    try:
        ensure_node_modules()
    except RuntimeError as error:
        pytest.fail(str(error))
    return HARNESS


@pytest.fixture(scope="module")
def server(built: Path):
    handler = functools.partial(QuietHandler, directory=str(built))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def reports(built: Path, harness: Path, server: str) -> dict[str, dict]:
    listed = pages()
    done = subprocess.run(
        ["node", str(harness / "check_pages.js"), server, *listed],
        cwd=harness,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, f"the browser harness failed:\n{done.stderr[-3000:]}"
    found = {report["page"]: report for report in json.loads(done.stdout)["reports"]}
    assert sorted(found) == listed
    return found


def test_every_page_loads_cleanly_in_chromium(reports: dict[str, dict]) -> None:
    assert CHAPTER_2 in reports and "index.html" in reports
    problems = {
        page: {
            kind: report[kind]
            for kind in ("errors", "console", "offsite", "failed", "images")
            if report[kind]
        }
        for page, report in reports.items()
    }
    problems = {page: found for page, found in problems.items() if found}
    assert not problems, json.dumps(problems, indent=1)[:6000]


def test_the_static_explorer_switches_photos_without_a_kernel(
    reports: dict[str, dict],
) -> None:
    explorers = reports[CHAPTER_2]["explorers"]
    assert len(explorers) == 1, "chapter 2 should show one static explorer"
    (explorer,) = explorers
    before, after = explorer["before"], explorer["after"]
    assert before["photo"] == "chelsea" and after["photo"] != "chelsea"
    assert after["photoSrc"] != before["photoSrc"], (
        "changing the photo left the picture as it was"
    )
    assert after["heatSrc"] != before["heatSrc"], (
        "changing the photo left the map as it was"
    )
    assert before["caption"].startswith("Egyptian cat")
    assert not after["caption"].startswith("Egyptian cat"), after["caption"]
    assert after["classes"] != before["classes"]
    assert explorer["anyClassDisabled"], (
        "'any class' needs a kernel: it must be disabled"
    )
    assert explorer["heatVisible"]


def test_chapter_2_images_fit_the_page_weight_budget(built: Path) -> None:
    page = (built / CHAPTER_2).read_text(encoding="utf-8")
    inline = sum(
        len(data) * 3 // 4
        for data in re.findall(r"data:image/[a-z+]+;base64,([A-Za-z0-9+/=]+)", page)
    )
    files = {
        src
        for src in re.findall(r"<img[^>]+src=\"([^\"]+)\"", page)
        if not src.startswith("data:")
    }
    on_disk = sum((built / "notebooks" / src).resolve().stat().st_size for src in files)
    assert inline + on_disk <= IMAGE_BUDGET, (inline, on_disk)


def test_the_widget_manager_renders_labelled_widgets(
    built: Path, harness: Path, tmp_path: Path
) -> None:
    """The self-hosted ipywidgets manager with the book's MathJax 3: widgets typeset
    their labels with MathJax 2's Hub.Queue, which threw a TypeError per labelled widget
    until setup.js (tools/fetch-widget-js.sh) bridged it."""
    ipywidgets = pytest.importorskip("ipywidgets")
    from ipywidgets.embed import embed_data

    for folder in ("widgets", "mathjax"):
        (tmp_path / folder).symlink_to(built / folder, target_is_directory=True)
    shown = ipywidgets.VBox(
        [
            ipywidgets.IntSlider(3, description="layer"),
            ipywidgets.Dropdown(options=["a", "b"], description="photo"),
        ]
    )
    data = embed_data(views=[shown])
    (tmp_path / "index.html").write_text(f"""<!doctype html><html><head>
<script defer src="mathjax/tex-mml-chtml.js"></script>
<script src="widgets/require.js"></script><script src="widgets/setup.js"></script>
<script src="widgets/embed-amd.js"></script></head><body><p>$x^2$</p>
<script type="application/vnd.jupyter.widget-state+json">\
{json.dumps(data["manager_state"])}</script>
<script type="application/vnd.jupyter.widget-view+json">\
{json.dumps(data["view_specs"][0])}</script>
</body></html>""")
    handler = functools.partial(QuietHandler, directory=str(tmp_path))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        done = subprocess.run(
            [
                "node",
                str(harness / "check_pages.js"),
                f"http://127.0.0.1:{httpd.server_address[1]}/",
                "index.html",
            ],
            cwd=harness,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert done.returncode == 0, done.stderr[-3000:]
    (report,) = json.loads(done.stdout)["reports"]
    assert report["errors"] == [] and report["console"] == [], report
    assert report["widgetLabels"] == ["layer", "photo"], report
