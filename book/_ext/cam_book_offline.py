"""Sphinx extension: keep the built book free of CDN requests.

The book's HTML must work without reaching a CDN: the ipywidgets manager and
MathJax are self-hosted (see tools/fetch-widget-js.sh and _config.yml). This
extension does two things:

1. Drops sphinx-thebe's page scripts when Thebe is not enabled in
   ``launch_buttons``. Jupyter Book always loads sphinx-thebe, whose inline
   configuration names a Thebe bundle on unpkg.com; without a Thebe launch
   button nothing uses it.
2. After an HTML build, scans every page and warns about each script or
   stylesheet loaded from another host and each mention of a well-known CDN.
   Under ``-W`` (tools/build-book.sh) such a warning fails the build.
   Silence it with ``suppress_warnings = ["cam_book.cdn"]`` if ever needed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)

# Hosts that serve front-end packages; any mention in a page is suspicious.
CDN_HOSTS = re.compile(
    r"cdn\.jsdelivr\.net|unpkg\.com|cdnjs\.cloudflare\.com|ajax\.googleapis\.com"
    r"|code\.jquery\.com|fonts\.googleapis\.com|fonts\.gstatic\.com|polyfill\.io"
    r"|stackpath\.bootstrapcdn\.com|cdn\.plot\.ly",
    re.IGNORECASE,
)
# A <script src=...> or <link rel=stylesheet href=...> pointing off-site.
REMOTE_SCRIPT = re.compile(r"<script\b[^>]*\bsrc=[\"']((?:https?:)?//[^\"']+)", re.IGNORECASE)
REMOTE_LINK = re.compile(r"<link\b[^>]*\bhref=[\"']((?:https?:)?//[^\"']+)[^>]*>", re.IGNORECASE)


def _thebe_enabled(app: Sphinx) -> bool:
    options = getattr(app.config, "html_theme_options", None) or {}
    launch = options.get("launch_buttons") or {}
    return bool(launch.get("thebe", False))


def _is_thebe_script(js: Any) -> bool:
    filename = str(getattr(js, "filename", js) or "")
    body = str(getattr(js, "attributes", {}).get("body", "") or "")
    return filename.endswith("sphinx-thebe.js") or "THEBE_JS_URL" in body


def drop_thebe_scripts(
    app: Sphinx, pagename: str, templatename: str, context: dict, doctree: Any
) -> None:
    if _thebe_enabled(app) or "script_files" not in context:
        return
    # Build a new list (the one in the context is the builder's own list).
    context["script_files"] = [js for js in context["script_files"] if not _is_thebe_script(js)]


def check_no_cdn(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder is None or app.builder.format != "html":
        return
    outdir = Path(app.builder.outdir)
    for page in sorted(outdir.rglob("*.html")):
        text = page.read_text(encoding="utf-8", errors="replace")
        problems = set()
        for pattern in (REMOTE_SCRIPT, REMOTE_LINK):
            for match in pattern.finditer(text):
                tag = match.group(0).lower()
                if pattern is REMOTE_LINK and "stylesheet" not in tag and "preload" not in tag:
                    continue  # ordinary hyperlinks are fine
                problems.add(f"loads {match.group(1)}")
        for match in CDN_HOSTS.finditer(text):
            problems.add(f"mentions {match.group(0)}")
        for problem in sorted(problems):
            logger.warning(
                "%s %s; the book must not depend on a CDN (self-host it, "
                "see tools/fetch-widget-js.sh)",
                page.relative_to(outdir),
                problem,
                type="cam_book",
                subtype="cdn",
            )


def setup(app: Sphinx) -> dict[str, Any]:
    # Run after myst-nb and sphinx.ext.mathjax have added their page scripts.
    app.connect("html-page-context", drop_thebe_scripts, priority=900)
    app.connect("build-finished", check_no_cdn)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
