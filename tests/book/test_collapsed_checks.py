"""The chapters' hidden check cells are collapsed in JupyterLab
(tools/collapse_checks.py).

JupyterLab ignores the book's ``remove-cell`` / ``remove-input`` tags; it folds a cell's
code when the cell's metadata says ``"jupyter": {"source_hidden": true}``. Cost: reading
five notebooks and one run of the script on a three-cell notebook (well under a
second)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "collapse_checks.py"
CHAPTERS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def code_cells(path: Path) -> list[tuple[int, dict]]:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return [(i, cell) for i, cell in enumerate(cells) if cell["cell_type"] == "code"]


def test_every_hidden_check_is_collapsed_and_nothing_else() -> None:
    assert len(CHAPTERS) >= 5
    wrong = {}
    for path in CHAPTERS:
        for i, cell in code_cells(path):
            tags = cell["metadata"].get("tags", [])
            hidden_on_page = "remove-cell" in tags or "remove-input" in tags
            folded = cell["metadata"].get("jupyter", {}).get("source_hidden") is True
            if hidden_on_page != folded:
                wrong.setdefault(path.name, []).append(i)
    assert not wrong, f"run python tools/collapse_checks.py; cells out of step: {wrong}"


def test_the_script_follows_the_tags_and_is_idempotent(tmp_path: Path) -> None:
    def cell(tags: list[str], jupyter: dict | None = None) -> dict:
        metadata = {"tags": tags} if tags else {}
        if jupyter is not None:
            metadata["jupyter"] = jupyter
        return {
            "cell_type": "code",
            "execution_count": None,
            "metadata": metadata,
            "outputs": [],
            "source": ["x = 1"],
        }

    notebook = {
        "cells": [
            cell(["remove-cell"]),
            cell(["remove-input"]),
            cell([], {"source_hidden": True, "outputs_hidden": False}),
            cell(["hide-input"]),
        ],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(notebook, indent=1) + "\n", encoding="utf-8")
    run = [sys.executable, str(SCRIPT)]
    assert (
        subprocess.run([*run, "--check", str(path)], capture_output=True).returncode
        == 1
    )
    subprocess.run([*run, str(path)], check=True, capture_output=True)
    once = path.read_text(encoding="utf-8")
    cells = json.loads(once)["cells"]
    assert [c["metadata"].get("jupyter") for c in cells] == [
        {"source_hidden": True},
        {"source_hidden": True},
        {"outputs_hidden": False},
        None,
    ]
    assert [c["metadata"].get("tags") for c in cells] == [
        ["remove-cell"],
        ["remove-input"],
        None,
        ["hide-input"],
    ]
    subprocess.run([*run, str(path)], check=True, capture_output=True)
    assert path.read_text(encoding="utf-8") == once
    assert (
        subprocess.run([*run, "--check", str(path)], capture_output=True).returncode
        == 0
    )
