"""Measure each chapter's writing budget on the built HTML (``_build/html``):

    python tools/book_budget.py [--html _build/html] [--json OUT]

Per chapter page: prose words (paragraphs, list items, captions and headings of the main
line; not code, outputs, maths, tables or collapsed asides), numbers per 100 prose words
(digit groups such as ``3``, ``0.25``, ``40%`` in that prose), whether the page shows
display maths, and the words of a section whose title mentions cost. Exit status 1 when
a chapter is over a budget:

- at most 3,500 prose words;
- at most 3 numbers per 100 prose words;
- display maths in every chapter but the first (chapters 2-6);
- a cost section of at most 450 words.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from bs4 import BeautifulSoup

ROOT = Path(__file__).resolve().parents[1]
MAX_WORDS = 3500
MAX_NUMBERS_PER_100 = 3.0
MAX_COST_WORDS = 450
NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:[.,]\d+)*%?(?![\w])")
WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'’.%-]*")
# what is not prose: code and its outputs, maths, tables, asides, generated numbering
SKIP = (
    "div.cell_input",
    "div.cell_output",
    "div.highlight",
    "pre",
    "span.math",
    "div.math",
    "table",
    "details",
    "div.dropdown",
    "span.caption-number",
    "span.eqno",
    "a.headerlink",
    "script",
    "style",
    "nav",
    "div.toggle-hidden",
)


def prose(article) -> list[str]:
    """The main line's text blocks, in order."""
    for selector in SKIP:
        for node in article.select(selector):
            node.decompose()
    blocks = []
    for node in article.find_all(
        ["p", "li", "h1", "h2", "h3", "h4", "figcaption", "dd", "dt"]
    ):
        if (
            node.find_parent(["li", "figcaption", "dd"]) is not None
            and node.name == "p"
        ):
            continue  # counted with its list item or caption
        text = " ".join(node.get_text(" ").split())
        if text:
            blocks.append(text)
    return blocks


def measure(page: Path) -> dict:
    soup = BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser")
    article = soup.select_one("article.bd-article") or soup.body
    has_display_maths = bool(article.select("div.math"))
    sections = article.select("section")
    cost_words = 0
    for section in sections:
        heading = section.find(["h2", "h3"])
        if heading and re.search(r"\bcost", heading.get_text(), re.I):
            copy = BeautifulSoup(str(section), "html.parser")
            cost_words = max(cost_words, sum(len(WORD.findall(b)) for b in prose(copy)))
    blocks = prose(article)
    words = sum(len(WORD.findall(b)) for b in blocks)
    numbers = sum(len(NUMBER.findall(b)) for b in blocks)
    return {
        "words": words,
        "numbers": numbers,
        "numbers_per_100_words": round(100 * numbers / words, 2) if words else 0.0,
        "display_maths": has_display_maths,
        "cost_section_words": cost_words,
    }


def check(name: str, m: dict) -> list[str]:
    problems = []
    if m["words"] > MAX_WORDS:
        problems.append(f"{m['words']} prose words > {MAX_WORDS}")
    if m["numbers_per_100_words"] > MAX_NUMBERS_PER_100:
        problems.append(
            f"{m['numbers_per_100_words']} numbers per 100 words > "
            f"{MAX_NUMBERS_PER_100}"
        )
    if not name.startswith("01") and not m["display_maths"]:
        problems.append("no display maths")
    if m["cost_section_words"] > MAX_COST_WORDS:
        problems.append(
            f"cost section of {m['cost_section_words']} words > {MAX_COST_WORDS}"
        )
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--html", type=Path, default=ROOT / "_build" / "html")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    pages = sorted((args.html / "notebooks").glob("0*.html"))
    if not pages:
        print(
            f"book_budget: no chapter pages under {args.html}/notebooks; "
            "build the book first",
            file=sys.stderr,
        )
        return 2
    results, failed = {}, False
    print(
        f"{'chapter':<22} {'words':>6} {'num/100':>8} {'maths':>6} {'cost':>5}  verdict"
    )
    for page in pages:
        m = measure(page)
        problems = check(page.stem, m)
        failed |= bool(problems)
        results[page.stem] = m | {"problems": problems}
        print(
            f"{page.stem:<22} {m['words']:>6} {m['numbers_per_100_words']:>8} "
            f"{'yes' if m['display_maths'] else 'no':>6} {m['cost_section_words']:>5}  "
            f"{'; '.join(problems) or 'within budget'}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
