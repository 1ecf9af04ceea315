"""The graded copy of a submission: the student's cells and the key's visible checks
(used by tools/grade.py)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import nbformat


def _normalised(source: str) -> str:
    return "\n".join(line.rstrip() for line in source.strip().splitlines())


def _exercise_of(cell) -> str | None:
    for tag in cell.get("metadata", {}).get("tags", []):
        if isinstance(tag, str) and tag.startswith("exercise-"):
            return tag[len("exercise-") :]
    return None


@dataclass
class Prepared:
    notebook: object  # nbformat.NotebookNode to run
    deleted: dict[str, list[str]] = field(
        default_factory=dict
    )  # exercise -> visible check ids
    restored: list[str] = field(
        default_factory=list
    )  # check ids whose edited text was restored
    dropped_hidden: int = 0


def _code_cell(source: str, grading: dict, cell_id: str):
    cell = nbformat.v4.new_code_cell(source, metadata={"grading": grading})
    cell["id"] = cell_id
    return cell


def prepare(submission, key: dict) -> Prepared:
    """The graded copy of a submission (an nbformat v4 notebook) for one key: the
    student's cells and the visible checks (the hidden checks run elsewhere)."""
    checks = {
        check["id"]: (exercise["id"], check)
        for exercise in key["exercises"]
        for check in exercise["checks"]
    }
    by_text = {
        _normalised(check["source"]): check_id
        for check_id, (_, check) in checks.items()
    }
    hidden_text = {
        _normalised(h["source"]) for e in key["exercises"] for h in e["hidden_checks"]
    }
    hidden_ids = {h["id"] for e in key["exercises"] for h in e["hidden_checks"]}
    solutions = {
        cell_id: exercise["id"]
        for exercise in key["exercises"]
        for cell_id in exercise["solutions"]
    }
    prepared = Prepared(nbformat.v4.new_notebook())
    cells, found = [], set()
    for index, cell in enumerate(submission.cells):
        cell_id = cell.get("id") or ""
        text = _normalised(cell.get("source", ""))
        if cell.get("cell_type") != "code":
            new = copy.deepcopy(cell)
            new["id"] = f"s{index:03d}"
            new.metadata = {}
            cells.append(new)
            continue
        matched = (
            cell_id if cell_id in checks and cell_id not in found else by_text.get(text)
        )
        if matched is not None and matched not in found:
            found.add(matched)
            exercise, check = checks[matched]
            if text != _normalised(check["source"]):
                prepared.restored.append(matched)
            cells.append(
                _code_cell(
                    check["source"],
                    {"role": "check", "exercise": exercise, "key": matched},
                    f"k-{matched}",
                )
            )
            continue
        tags = cell.get("metadata", {}).get("tags", [])
        if cell_id in hidden_ids or "hidden-check" in tags or text in hidden_text:
            prepared.dropped_hidden += 1
            continue
        exercise = solutions.get(cell_id)
        if exercise is None and "solution" in tags:
            exercise = _exercise_of(cell)
        grading = (
            {"role": "solution", "exercise": exercise}
            if exercise
            else {"role": "student"}
        )
        cells.append(_code_cell(cell.get("source", ""), grading, f"s{index:03d}"))
    # Put back deleted visible checks after the exercise's last cell (else at the end).
    for exercise in key["exercises"]:
        for check in exercise["checks"]:
            if check["id"] in found:
                continue
            prepared.deleted.setdefault(exercise["id"], []).append(check["id"])
            restored = _code_cell(
                check["source"],
                {"role": "check", "exercise": exercise["id"], "key": check["id"]},
                f"k-{check['id']}",
            )
            positions = [
                i
                for i, c in enumerate(cells)
                if c.metadata.get("grading", {}).get("exercise") == exercise["id"]
            ]
            cells.insert(positions[-1] + 1 if positions else len(cells), restored)
    prepared.notebook.cells = cells
    prepared.notebook.metadata = {
        "kernelspec": {
            "display_name": "Python 3 (ipykernel)",
            "language": "python",
            "name": "python3",
        },
        "language_info": {"name": "python"},
    }
    return prepared
