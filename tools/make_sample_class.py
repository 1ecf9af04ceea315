"""Build sample submissions from the exercise notebooks: right answers, typical
mistakes, broken files.

    # (re)build the committed sample class
    python tools/make_sample_class.py coursework/sample_class

A submission starts from the student version (coursework/student/) and fills each
exercise's stub with the reference solution (from coursework/source/), with one of the
typical mistakes of ``sample_mistakes.py``, or with something broken (a syntax error,
an infinite loop), or leaves the stub; check cells can be deleted or edited and a file
can be made unreadable.
tests/coursework/ and benchmarks/grading_speed.py build their classes with the same
functions, and :func:`expected_grade` says what the grader must report for each
exercise.

Each exercise has one *subtle* mistake that passes its visible checks and must be caught
by a hidden check (``caught_by``); tests/coursework/ checks that this holds for all of
them. For the reasoning exercises (1.4 to 4.4, 5.2, 6.3) a mistake is a wrong answer of
the right form.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sample_mistakes import BROKEN, MISTAKES  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SOURCE_DIR = ROOT / "coursework" / "source"
STUDENT_DIR = ROOT / "coursework" / "student"
NOTEBOOKS = (
    "ex01_overview",
    "ex02_principle",
    "ex03_implementation",
    "ex04_enhanced",
    "ex05_family",
    "ex06_evaluation",
)
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
STUB = 'raise NotImplementedError("Exercise '


@dataclass(frozen=True)
class Plan:
    """One submitted notebook. ``answers``: exercise -> ``right`` (the default),
    ``stub`` (left as handed out), ``syntax``, ``loop``, or a mistake name of
    :data:`MISTAKES` (``subtle``, ...)."""

    answers: dict[str, str] = field(default_factory=dict)
    delete_checks: tuple[
        str, ...
    ] = ()  # exercises whose visible check cells are deleted
    edit_checks: tuple[
        str, ...
    ] = ()  # exercises whose visible checks are emptied (restored by the grader)
    unreadable: bool = False  # the file is cut short: not valid JSON


def exercises_of(notebook: str) -> list[str]:
    meta = json.loads((STUDENT_DIR / f"{notebook}.ipynb").read_text(encoding="utf-8"))[
        "metadata"
    ]
    return [exercise["id"] for exercise in meta["coursework"]["exercises"]]


def reference_bodies(notebook: str) -> dict[str, str]:
    """Exercise -> the reference solution's code between the markers, dedented."""
    source = nbformat.read(SOURCE_DIR / f"{notebook}.ipynb", as_version=4)
    bodies = {}
    for cell in source.cells:
        tags = cell.metadata.get("tags", [])
        if "solution" not in tags:
            continue
        exercise = next(
            t[len("exercise-") :] for t in tags if t.startswith("exercise-")
        )
        lines = cell.source.split("\n")
        start = next(i for i, line in enumerate(lines) if line.strip() == BEGIN)
        stop = next(i for i, line in enumerate(lines) if line.strip() == END)
        bodies[exercise] = textwrap.dedent("\n".join(lines[start + 1 : stop])) + "\n"
    return bodies


def body_for(notebook: str, exercise: str, answer: str) -> str | None:
    if answer == "right":
        return reference_bodies(notebook)[exercise]
    if answer == "stub":
        return None
    if answer in BROKEN:
        if answer == "syntax":
            return BROKEN["syntax"] + reference_bodies(notebook)[exercise]
        return BROKEN[answer]
    return textwrap.dedent(MISTAKES[exercise][answer].body).strip("\n") + "\n"


def submission(notebook: str, plan: Plan) -> str:
    """The text of the submitted notebook file."""
    nb = nbformat.read(STUDENT_DIR / f"{notebook}.ipynb", as_version=4)
    cells = []
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        exercise = next(
            (t[len("exercise-") :] for t in tags if t.startswith("exercise-")), None
        )
        if "solution" in tags:
            body = body_for(notebook, exercise, plan.answers.get(exercise, "right"))
            if body is not None:
                lines = []
                for line in cell.source.split("\n"):
                    if line.strip().startswith(STUB):
                        indent = line[: len(line) - len(line.lstrip())]
                        lines += [
                            indent + part if part else part
                            for part in body.rstrip("\n").split("\n")
                        ]
                    else:
                        lines.append(line)
                cell.source = "\n".join(lines)
        if "check" in tags and exercise in plan.delete_checks:
            continue
        if "check" in tags and exercise in plan.edit_checks:
            cell.source = "pass  # the check was here"
        cells.append(cell)
    nb.cells = cells
    text = nbformat.writes(nb) + "\n"
    return text[: len(text) // 2] if plan.unreadable else text


ALL_EXERCISES = [
    f"{chapter}.{number}" for chapter in range(1, 7) for number in range(1, 5)
]

# A class of seven: every kind of answer and of breakage the grader must handle.
SAMPLE_CLASS: dict[str, dict[str, Plan]] = {
    "ada": {name: Plan() for name in NOTEBOOKS},  # everything right
    "ben": {
        name: Plan({e: "stub" for e in ALL_EXERCISES}) for name in NOTEBOOKS
    },  # handed in the notebooks untouched
    "chloe": {  # typical mistakes, among them the softmax one
        "ex01_overview": Plan({"1.1": "subtle"}),
        "ex02_principle": Plan({"2.2": "subtle"}),
        "ex03_implementation": Plan({"3.1": "subtle"}),
        "ex04_enhanced": Plan({"4.1": "subtle"}),
        "ex05_family": Plan(),
        "ex06_evaluation": Plan({"6.2": "subtle"}),
    },
    # a syntax error, an infinite loop, one exercise not attempted, one notebook missing
    "dev": {
        "ex01_overview": Plan({"1.2": "syntax"}),
        "ex02_principle": Plan({"2.3": "loop"}),
        "ex03_implementation": Plan({"3.3": "stub"}),
    },
    "eve": {  # deleted and edited check cells
        "ex01_overview": Plan(edit_checks=("1.1",), delete_checks=("1.3",)),
        "ex02_principle": Plan(),
        "ex03_implementation": Plan(delete_checks=("3.2",)),
        "ex04_enhanced": Plan({"4.2": "subtle", "4.3": "stub"}),
        "ex05_family": Plan({"5.1": "subtle"}),
        "ex06_evaluation": Plan(),
    },
    "finn": {  # an unreadable file and more mistakes
        "ex01_overview": Plan(unreadable=True),
        "ex02_principle": Plan({"2.1": "subtle", "2.2": "mixed"}),
        "ex03_implementation": Plan({"3.2": "subtle", "3.3": "subtle"}),
        "ex04_enhanced": Plan({"4.3": "subtle", "4.4": "guess"}),
        "ex05_family": Plan(),
        "ex06_evaluation": Plan({"6.1": "subtle"}),
    },
    # every exercise with its subtle mistake: each must be caught by a hidden check
    "gus": {name: Plan({e: "subtle" for e in ALL_EXERCISES}) for name in NOTEBOOKS},
}


def expected_grade(
    plans: dict[str, Plan], notebook: str, exercise: str
) -> tuple[str, str]:
    """``(status, what the message or check id must contain)`` the grader must
    report."""
    plan = plans.get(notebook)
    if plan is None:
        return "failed", "not submitted"
    if plan.unreadable:
        return "errored", "cannot be read"
    if exercise in plan.delete_checks:
        return "failed", "deleted"
    answer = plan.answers.get(exercise, "right")
    if answer == "right":
        return "passed", ""
    if answer == "stub":
        return "errored", "NotImplementedError"
    if answer == "syntax":
        return "errored", "SyntaxError"
    if answer == "loop":
        return "errored", "timed out"
    return "failed", MISTAKES[exercise][answer].caught_by


def build_class(folder: Path, plans_by_student: dict[str, dict[str, Plan]]) -> None:
    """Write ``folder/<student>/<notebook>.ipynb`` for every plan."""
    for student, plans in plans_by_student.items():
        (folder / student).mkdir(parents=True, exist_ok=True)
        for notebook, plan in plans.items():
            (folder / student / f"{notebook}.ipynb").write_text(
                submission(notebook, plan), encoding="utf-8"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="where to write the class (replaced)")
    args = parser.parse_args(argv)
    if args.folder.exists():
        shutil.rmtree(args.folder)
    build_class(args.folder, SAMPLE_CLASS)
    count = sum(len(plans) for plans in SAMPLE_CLASS.values())
    print(
        f"make_sample_class: {len(SAMPLE_CLASS)} students, {count} notebooks "
        f"in {args.folder}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
