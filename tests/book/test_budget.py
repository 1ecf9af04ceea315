"""Each chapter's writing budget, measured on the built HTML by tools/book_budget.py,
and the measurement itself on a page whose counts are known by hand."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HTML = ROOT / "_build" / "html"
spec = importlib.util.spec_from_file_location(
    "book_budget", ROOT / "tools" / "book_budget.py"
)
budget = importlib.util.module_from_spec(spec)
spec.loader.exec_module(budget)

PAGE = """<html><body><article class="bd-article">
<section><h1>Title here</h1>
<p>CAM uses 3 maps and 40% of them.</p>
<div class="cell_input"><pre>x = 12345 words words words</pre></div>
<div class="cell_output"><p>99 99 99</p></div>
<div class="math">M = 1 + 2</div>
<table><tr><td>7 8 9</td></tr></table>
<details><summary>aside 5</summary><p>six seven 8</p></details>
<ul><li><p>one item 2.5</p></li></ul>
<figure><figcaption><p><span class="caption-number">Fig. 4 </span>A \
map.</p></figcaption></figure>
</section>
<section><h2>What it costs</h2><p>It costs 2 passes.</p></section>
</article></body></html>"""


def test_the_measure_counts_prose_only(tmp_path: Path) -> None:
    page = tmp_path / "02_x.html"
    page.write_text(PAGE)
    m = budget.measure(page)
    # prose: "Title here" (2), "CAM uses 3 maps and 40% of them." (8), "one item 2.5"
    # (3), "A map." (2), "What it costs" (3), "It costs 2 passes." (4): 22 words,
    # numbers 3, 40%, 2.5 and 2; not the code, output, maths, table, aside or figure
    # number
    assert m["words"] == 22 and m["numbers"] == 4
    assert m["display_maths"] is True
    assert m["cost_section_words"] == 7  # its heading and its paragraph
    assert budget.check("02_x", m) == ["18.18 numbers per 100 words > 3.0"]


def test_every_chapter_is_within_its_budget() -> None:
    if not (HTML / "notebooks").is_dir():
        if os.environ.get("CI") or os.environ.get("CAM_BOOK_REQUIRE_BUILD"):
            pytest.fail("the built book is missing: run bash tools/build-book.sh first")
        pytest.skip("the book is not built (bash tools/build-book.sh)")
    assert budget.main(["--html", str(HTML)]) == 0
