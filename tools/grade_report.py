"""The grading report: report.csv and report.md (used by tools/grade.py)."""
from __future__ import annotations

import csv
from pathlib import Path


def write_reports(out: Path, grades: list, notes: dict[str, list[str]], folder_notes: list[str],
                  keys: dict[str, dict], cell_timeout: float) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "report.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["student", "notebook", "exercise", "title", "status", "message", "check"])
        for g in grades:
            writer.writerow([g.student, g.notebook, g.exercise, g.title, g.status, g.message, g.check])
    exercises = [(name, e["id"], e["title"]) for name, key in keys.items() for e in key["exercises"]]
    students = list(notes)
    symbol = {"passed": "pass", "failed": "FAIL", "errored": "ERROR"}
    table = {(g.student, g.exercise): g for g in grades}
    lines = ["# Grading report", "",
             f"{len(students)} students, {len(keys)} notebooks, {len(exercises)} exercises; "
             f"cell timeout {cell_timeout:g} s. *pass*: every visible and hidden check passed; *FAIL*: a check's "
             "assert failed, a check cell was deleted, or the notebook was not submitted; *ERROR*: the code "
             "raised an exception (NotImplementedError: not attempted), timed out, or the notebook could not be read.",
             "", "## Summary", "",
             "| student | " + " | ".join(ex for _, ex, _ in exercises) + " | passed |",
             "|---|" + "---|" * len(exercises) + "---:|"]
    for student in students:
        row = [symbol[table[(student, ex)].status] for _, ex, _ in exercises]
        passed = sum(table[(student, ex)].status == "passed" for _, ex, _ in exercises)
        lines.append(f"| {_md(student)} | " + " | ".join(row) + f" | {passed}/{len(exercises)} |")
    lines += ["", "Exercises: " + "; ".join(f"{ex} {title} ({name})" for name, ex, title in exercises) + ".", "",
              "## Details", ""]
    for student in students:
        lines.append(f"### {_md(student)}")
        lines.append("")
        problems = [table[(student, ex)] for _, ex, _ in exercises if table[(student, ex)].status != "passed"]
        if not problems:
            lines.append("All exercises passed.")
        for g in problems:
            lines.append(f"- **{g.exercise}** {g.status}: {_md(g.message)}")
        for note in notes[student]:
            lines.append(f"- note: {_md(note)}")
        lines.append("")
    if folder_notes:
        lines += ["## Other files", ""] + [f"- {_md(n)}" for n in folder_notes] + [""]
    (out / "report.md").write_text("\n".join(lines), encoding="utf-8")


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


