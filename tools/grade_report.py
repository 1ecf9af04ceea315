"""Grades from the cells' records, and the report: report.csv and report.md (used by
tools/grade.py)."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import grade_sandbox as sandbox


# --- turning cell results into grades -------------------------------------------------


def load_sanitizer(path: Path) -> list[tuple[re.Pattern, str]]:
    """The (regex, replacement) pairs of an nbval sanitize file, also applied to report
    messages."""
    pairs, regex = [], None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("regex:"):
            regex = line[len("regex:") :].strip()
        elif line.startswith("replace:") and regex is not None:
            pairs.append((re.compile(regex), line[len("replace:") :].strip()))
            regex = None
    return pairs


SANITIZER: list[tuple[re.Pattern, str]] = []


def clean(text: str, limit: int = 500) -> str:
    """One line, sanitised (addresses, paths, timings), at most ``limit`` characters."""
    for pattern, replacement in SANITIZER:
        text = pattern.sub(replacement, text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class Grade:
    student: str
    notebook: str
    exercise: str
    title: str
    status: str  # passed | failed | errored
    message: str = ""
    check: str = ""  # the key id of the cell that decided the status


LIMITS = sandbox.Limits()  # set by grade_folder, named in messages


def _describe(record: dict, cell_timeout: float) -> tuple[str, str]:
    """``(kind, text)`` of a cell that did not pass; kind: timeout, not-run or
    exception.
    """
    if record.get("ename") == "Stopped":
        return "not-run", record["evalue"]
    if record.get("timed_out"):
        return "timeout", (
            f"timed out: did not finish within {cell_timeout:g} s and was stopped "
            "(an infinite loop, or code that crashed the Python kernel)"
        )
    if record["outcome"] == "skipped":
        return "not-run", f"not run: {record['evalue']}"
    name, value = record.get("ename") or "Error", clean(record.get("evalue", ""))
    if name == "MemoryError" or "can't allocate memory" in value:
        value += f" (the memory limit is {LIMITS.memory_mb} MiB per process)"
    if name == "BlockingIOError":
        value += f" (the limit on processes and threads is {LIMITS.processes})"
    if name == "RuntimeError" and "Kernel dead" in value:
        return (
            "not-run",
            "not run: the Python kernel had stopped "
            "(an earlier cell crashed it or could not be stopped)",
        )
    return "exception", f"{name}: {value}" if value else name


def grade_notebook(
    student: str,
    key: dict,
    prepared,  # grade_prepare.Prepared, or None
    run,  # grade_run.Run, or None
    problem: str | None,
    cell_timeout: float,
) -> tuple[list[Grade], list[str]]:
    """Per-exercise grades and notebook-level notes."""
    name = key["notebook"]
    notes: list[str] = []
    if problem is not None:
        status = "failed" if problem == "not submitted" else "errored"
        return [
            Grade(student, name, e["id"], e["title"], status, problem)
            for e in key["exercises"]
        ], notes
    assert prepared is not None and run is not None
    by_key = {
        r["grading"].get("key"): r for r in run.records if r["grading"].get("key")
    }
    if run.killed:
        notes.append(
            f"{name}: stopped at {run.limit}; cells that had not run count as errored"
        )
    if run.hidden_limit:
        notes.append(
            f"{name}: the hidden checks' process was stopped at {run.hidden_limit}"
        )
    if not run.records:
        notes.append(f"{name}: no cell ran; pytest said: {clean(run.tail[-300:])}")
    for record in run.records:
        grading = record["grading"]
        if (
            grading.get("role") in ("student", "solution")
            and record["outcome"] == "error"
        ):
            kind, text = _describe(record, cell_timeout)
            if kind == "not-run":
                continue
            where = (
                f"exercise {grading['exercise']}'s code"
                if grading.get("role") == "solution"
                else "a cell of yours"
            )
            notes.append(
                f"{name}: {where} (cell {record['cell']}) "
                f"{'' if kind == 'timeout' else 'raised '}{text}"
            )
    dead = [
        r["cell"]
        for r in run.records
        if _describe(r, cell_timeout)[0] == "not-run" and r["outcome"] == "error"
    ]
    if dead:
        notes.append(
            f"{name}: the Python kernel had stopped before cell {dead[0]}; "
            "later cells did not run"
        )
    if prepared.restored:
        notes.append(
            f"{name}: edited check cells were restored to the original before "
            f"grading: {', '.join(prepared.restored)}"
        )
    if prepared.dropped_hidden:
        notes.append(
            f"{name}: {prepared.dropped_hidden} hidden-check cell(s) found in the "
            "submission were replaced by the key's"
        )
    grades = []
    for exercise in key["exercises"]:
        ex_id = exercise["id"]
        visible = {c["id"] for c in exercise["checks"]}
        solution_errors = [
            r
            for r in run.records
            if r["grading"].get("role") == "solution"
            and r["grading"].get("exercise") == ex_id
            and r["outcome"] == "error"
            and _describe(r, cell_timeout)[0] != "not-run"
        ]
        grade = Grade(student, name, ex_id, exercise["title"], "passed")
        for check_id in [c["id"] for c in exercise["checks"]] + [
            h["id"] for h in exercise["hidden_checks"]
        ]:
            record = by_key.get(check_id)
            if record is not None and record["outcome"] == "passed":
                continue
            grade.check = check_id
            label = "check" if check_id in visible else "hidden check"
            if record is None:
                grade.status = "errored"
                grade.message = (
                    "not run: grading of this notebook was stopped before this check"
                )
            elif (
                record["outcome"] == "error"
                and record["ename"] == "AssertionError"
                and not record.get("timed_out")
            ):
                grade.status = "failed"
                grade.message = (
                    clean(record["evalue"])
                    or f"{label} {check_id} failed (an assert without a message)"
                )
            else:
                grade.status = "errored"
                kind, text = _describe(record, cell_timeout)
                if kind == "exception" and solution_errors:
                    first_kind, first_text = _describe(solution_errors[0], cell_timeout)
                    raised = "" if first_kind == "timeout" else "raised "
                    grade.message = (
                        f"your code for exercise {ex_id} {raised}{first_text}"
                    )
                elif kind == "not-run":
                    grade.message = text
                else:
                    raised = "" if kind == "timeout" else "raised "
                    grade.message = f"{label} {check_id} {raised}{text}"
            break
        if ex_id in prepared.deleted:
            outcome = grade.status
            grade.status = "failed"
            grade.check = prepared.deleted[ex_id][0]
            deleted = ", ".join(prepared.deleted[ex_id])
            grade.message = (
                f"check cells deleted ({deleted}); they were put back for grading "
                f"(result: {outcome}), but an exercise whose checks were deleted "
                "does not pass"
            )
        grades.append(grade)
    return grades, notes


def write_reports(
    out: Path,
    grades: list,
    notes: dict[str, list[str]],
    folder_notes: list[str],
    keys: dict[str, dict],
    cell_timeout: float,
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "report.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["student", "notebook", "exercise", "title", "status", "message", "check"]
        )
        for g in grades:
            writer.writerow(
                [
                    g.student,
                    g.notebook,
                    g.exercise,
                    g.title,
                    g.status,
                    g.message,
                    g.check,
                ]
            )
    exercises = [
        (name, e["id"], e["title"])
        for name, key in keys.items()
        for e in key["exercises"]
    ]
    students = list(notes)
    symbol = {"passed": "pass", "failed": "FAIL", "errored": "ERROR"}
    table = {(g.student, g.exercise): g for g in grades}
    lines = [
        "# Grading report",
        "",
        f"{len(students)} students, {len(keys)} notebooks, {len(exercises)} exercises; "
        f"cell timeout {cell_timeout:g} s. *pass*: every visible and hidden check "
        "passed; *FAIL*: a check's assert failed, a check cell was deleted, or the "
        "notebook was not submitted; *ERROR*: the code raised an exception "
        "(NotImplementedError: not attempted), timed out, ran into a limit, or the "
        "notebook could not be read.",
        "",
        "## Summary",
        "",
        "| student | " + " | ".join(ex for _, ex, _ in exercises) + " | passed |",
        "|---|" + "---|" * len(exercises) + "---:|",
    ]
    for student in students:
        row = [symbol[table[(student, ex)].status] for _, ex, _ in exercises]
        passed = sum(table[(student, ex)].status == "passed" for _, ex, _ in exercises)
        lines.append(
            f"| {_md(student)} | " + " | ".join(row) + f" | {passed}/{len(exercises)} |"
        )
    lines += [
        "",
        "Exercises: "
        + "; ".join(f"{ex} {title} ({name})" for name, ex, title in exercises)
        + ".",
        "",
        "## Details",
        "",
    ]
    for student in students:
        lines.append(f"### {_md(student)}")
        lines.append("")
        problems = [
            table[(student, ex)]
            for _, ex, _ in exercises
            if table[(student, ex)].status != "passed"
        ]
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
