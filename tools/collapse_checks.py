"""Collapse the chapters' hidden check cells in Jupyter, so a notebook reads like its
page.

    python tools/collapse_checks.py [--check] [NOTEBOOK ...]  (default:
    notebooks/*.ipynb)

The book removes some code cells from its pages by tag: ``remove-cell`` (the cell and
its output: the asserts that check the prose's claims) and ``remove-input`` (the code,
keeping its output). JupyterLab does not read those tags, so a student who opens a
chapter would see every check at full length between the explanations. This script gives
each such code cell the metadata JupyterLab (and Notebook 7) honours, ``"jupyter":
{"source_hidden": true}``: the code is folded to a one-line placeholder (click it to
read the code), the output stays visible, so a failing check still shows its error. Code
cells without those tags lose a ``source_hidden`` they may carry, so the metadata always
follows the tags.

Idempotent: rerun it after editing a chapter. Only cell metadata changes; the file keeps
its JSON layout (one-space indent, as Jupyter writes it). ``--check`` changes nothing
and exits 1 listing the cells out of step (tests/book/test_collapsed_checks.py runs the
same check).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HIDING_TAGS = ("remove-cell", "remove-input")


def is_check(cell: dict) -> bool:
    """A code cell that the book's pages hide (by the tags above)."""
    tags = cell.get("metadata", {}).get("tags", [])
    return cell.get("cell_type") == "code" and any(tag in tags for tag in HIDING_TAGS)


def collapsed(cell: dict) -> bool:
    return bool(cell.get("metadata", {}).get("jupyter", {}).get("source_hidden", False))


def out_of_step(notebook: dict) -> list[int]:
    """Indices of the code cells whose ``source_hidden`` does not follow their tags."""
    return [
        i
        for i, cell in enumerate(notebook["cells"])
        if cell.get("cell_type") == "code" and collapsed(cell) != is_check(cell)
    ]


def apply(notebook: dict) -> list[int]:
    """Set or clear ``source_hidden`` on every code cell; return the indices changed."""
    changed = out_of_step(notebook)
    for i in changed:
        cell = notebook["cells"][i]
        metadata = dict(cell.get("metadata", {}))
        jupyter = {
            key: value
            for key, value in metadata.pop("jupyter", {}).items()
            if key != "source_hidden"
        }
        if is_check(cell):
            jupyter["source_hidden"] = True
        if jupyter:
            metadata["jupyter"] = dict(sorted(jupyter.items()))
        cell["metadata"] = dict(
            sorted(metadata.items())
        )  # key order as Jupyter writes it
    return changed


def dumps(notebook: dict) -> str:
    return json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument(
        "--check",
        action="store_true",
        help="change nothing; exit 1 if a cell is out of step",
    )
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("*.ipynb"))
    stale = 0
    for path in paths:
        notebook = json.loads(path.read_text(encoding="utf-8"))
        if args.check:
            cells = out_of_step(notebook)
            stale += len(cells)
            if cells:
                print(f"{path}: cells {cells} do not follow their tags")
            continue
        changed = apply(notebook)
        if changed:
            path.write_text(dumps(notebook), encoding="utf-8")
        print(
            f"{path}: {len(changed)} cell(s) changed, "
            f"{sum(map(is_check, notebook['cells']))} check cell(s) collapsed"
        )
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
