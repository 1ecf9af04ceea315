"""Generate the student versions of the exercise notebooks and the grader's key.

    python tools/make_student_versions.py          # write coursework/student/, hidden/
    python tools/make_student_versions.py --check  # exit 1 if the committed files are
    stale

Each source notebook in ``coursework/source/`` holds, per exercise, cells tagged
``exercise-<n.m>`` plus one role tag:

- ``task``          markdown: what to do (kept as is);
- ``solution``      code: the reference solution between ``### BEGIN SOLUTION`` and
                    ``### END SOLUTION`` lines; in the student version the lines between
                    the markers (markers included) become one
                    ``raise NotImplementedError(...)`` at the marker's indentation, so a
                    function keeps its signature and docstring;
- ``check``         code: a visible check (asserts with messages a student can act on),
                    kept;
- ``hidden-check``  code: a hidden check, removed from the student version and written
                    to the key ``coursework/hidden/<name>.json``, which
                    ``tools/grade.py`` appends to each submission before running it.

Untagged cells (introduction, setup) are copied unchanged. The notebook metadata
``coursework.exercises`` lists the exercises (``id``, ``title``) in order.

Output is deterministic (cell ids from the source, no outputs, no execution counts,
sorted keys), so a stale student version shows up as a byte difference
(tests/coursework/).

A hidden check defines ``probe(seed=None)`` and ``verdict(got, want)`` and runs nothing
else (tools/grade_hidden.py says how the grader uses them).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
SOURCE_DIR = ROOT / "coursework" / "source"
STUDENT_DIR = ROOT / "coursework" / "student"
HIDDEN_DIR = ROOT / "coursework" / "hidden"

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
ROLES = ("task", "solution", "check", "hidden-check")
EXERCISE_TAG = re.compile(r"^exercise-(\d+\.\d+)$")
CELL_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


class SourceError(ValueError):
    """A source notebook breaks the conventions above; the message says where and
    how."""


def cell_role(cell) -> tuple[str | None, str | None]:
    """``(exercise id, role)`` from a cell's tags; ``(None, None)`` for untagged
    cells."""
    tags = cell.get("metadata", {}).get("tags", [])
    exercises = [m.group(1) for m in map(EXERCISE_TAG.match, tags) if m]
    roles = [tag for tag in tags if tag in ROLES]
    if len(exercises) > 1 or len(roles) > 1:
        raise SourceError(
            f"cell {cell.get('id')!r}: expected at most one exercise tag and "
            f"one role tag, got {tags}"
        )
    return (exercises[0] if exercises else None), (roles[0] if roles else None)


def stub_solution(source: str, exercise: str, where: str) -> str:
    """Replace each BEGIN/END SOLUTION block by ``raise NotImplementedError(...)``."""
    lines, out, inside, blocks = source.split("\n"), [], False, 0
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if stripped == BEGIN:
            if inside:
                raise SourceError(
                    f"{where}: line {number}: {BEGIN} inside another solution block"
                )
            inside, blocks = True, blocks + 1
            indent = line[: len(line) - len(line.lstrip())]
            out.append(
                f'{indent}raise NotImplementedError("Exercise {exercise}: '
                'replace this line with your solution")'
            )
        elif stripped == END:
            if not inside:
                raise SourceError(f"{where}: line {number}: {END} without {BEGIN}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise SourceError(f"{where}: {BEGIN} is never closed by {END}")
    if blocks == 0:
        raise SourceError(f"{where}: a solution cell needs a {BEGIN} ... {END} block")
    return "\n".join(out)


def check_hidden(source: str, where: str) -> None:
    """A hidden check defines probe(seed=None) and verdict(got, want) and, besides
    imports and comments, runs nothing: the grader executes it both beside the student's
    code and in its own process."""
    import ast

    try:
        tree = ast.parse(source)
    except SyntaxError as error:
        raise SourceError(
            f"{where}: the hidden check does not parse: {error}"
        ) from None
    functions = {
        node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)
    }
    others = [
        node
        for node in tree.body
        if not isinstance(node, (ast.FunctionDef, ast.Import, ast.ImportFrom))
    ]
    if others or not {"probe", "verdict"} <= set(functions):
        raise SourceError(
            f"{where}: a hidden check defines probe(seed=None) and "
            "verdict(got, want), with only imports beside them"
        )
    arguments = functions["probe"].args
    if [a.arg for a in arguments.args] != ["seed"] or len(arguments.defaults) != 1:
        raise SourceError(
            f"{where}: the hidden check's probe takes one argument, seed=None"
        )


def clean_cell(cell, source: str | None = None):
    """A copy with only what a fresh notebook needs: no outputs, counts or run-time
    metadata."""
    metadata = (
        {"tags": list(cell.metadata["tags"])} if cell.metadata.get("tags") else {}
    )
    if cell.cell_type == "code":
        new = nbformat.v4.new_code_cell(
            source if source is not None else cell.source, metadata=metadata
        )
    elif cell.cell_type == "markdown":
        new = nbformat.v4.new_markdown_cell(cell.source, metadata=metadata)
    else:
        new = nbformat.v4.new_raw_cell(cell.source, metadata=metadata)
    new["id"] = cell["id"]
    return new


def build(source_path: Path) -> tuple[str, str]:
    """``(student notebook text, key json text)`` for one source notebook."""
    name = source_path.stem
    nb = nbformat.read(source_path, as_version=4)
    info = nb.metadata.get("coursework", {})
    listed = [exercise["id"] for exercise in info.get("exercises", [])]
    if info.get("notebook") != name or not listed:
        raise SourceError(
            f"{source_path.name}: metadata.coursework needs notebook={name!r} "
            "and a list of exercises"
        )
    key = {
        "notebook": name,
        "source": f"coursework/source/{source_path.name}",
        "exercises": [
            {**exercise, "solutions": [], "checks": [], "hidden_checks": []}
            for exercise in info["exercises"]
        ],
    }
    by_id = {exercise["id"]: exercise for exercise in key["exercises"]}
    cells, seen = [], set()
    for cell in nb.cells:
        cell_id = cell.get("id")
        if not cell_id or not CELL_ID.match(cell_id) or cell_id in seen:
            raise SourceError(
                f"{source_path.name}: every cell needs a unique id of "
                f"letters, digits, - and _, got {cell_id!r}"
            )
        seen.add(cell_id)
        exercise, role = cell_role(cell)
        where = f"{source_path.name}, cell {cell_id!r}"
        if (exercise is None) != (role is None):
            raise SourceError(
                f"{where}: an exercise cell needs both an exercise-<n.m> tag "
                f"and one of {ROLES}"
            )
        if exercise is not None and exercise not in by_id:
            raise SourceError(
                f"{where}: exercise {exercise} is not listed in "
                "metadata.coursework.exercises"
            )
        if role in ("solution", "check", "hidden-check") and cell.cell_type != "code":
            raise SourceError(f"{where}: a {role} cell must be a code cell")
        if role != "solution" and (BEGIN in cell.source or END in cell.source):
            raise SourceError(
                f"{where}: solution markers outside a cell tagged 'solution'"
            )
        if role == "solution":
            cells.append(clean_cell(cell, stub_solution(cell.source, exercise, where)))
            by_id[exercise]["solutions"].append(cell_id)
        elif role == "check":
            cells.append(clean_cell(cell))
            by_id[exercise]["checks"].append({"id": cell_id, "source": cell.source})
        elif role == "hidden-check":
            check_hidden(cell.source, where)
            by_id[exercise]["hidden_checks"].append(
                {"id": cell_id, "source": cell.source}
            )
        else:
            cells.append(clean_cell(cell))
    for exercise in key["exercises"]:
        for part in ("solutions", "checks", "hidden_checks"):
            if not exercise[part]:
                raise SourceError(
                    f"{source_path.name}: exercise {exercise['id']} has no "
                    f"{part.replace('_', ' ')[:-1]} cell"
                )

    student = nbformat.v4.new_notebook()
    student.metadata = {
        "kernelspec": {
            "display_name": "Python 3 (ipykernel)",
            "language": "python",
            "name": "python3",
        },
        "language_info": {"name": "python"},
        "coursework": {"notebook": name, "exercises": info["exercises"]},
    }
    student.cells = cells
    nbformat.validate(student)
    return nbformat.writes(student) + "\n", json.dumps(
        key, indent=1, sort_keys=True, ensure_ascii=False
    ) + "\n"


def generate(source_dir: Path = SOURCE_DIR) -> dict[Path, str]:
    """``{path relative to the repository: text}`` of every generated file."""
    files: dict[Path, str] = {}
    sources = sorted(source_dir.glob("*.ipynb"))
    if not sources:
        raise SourceError(f"no source notebooks in {source_dir}")
    for source in sources:
        student, key = build(source)
        files[STUDENT_DIR.relative_to(ROOT) / source.name] = student
        files[HIDDEN_DIR.relative_to(ROOT) / f"{source.stem}.json"] = key
    return files


def stale_files(files: dict[Path, str], root: Path = ROOT) -> list[str]:
    """Generated files that differ from (or are missing in) ``root``, and leftovers
    there."""
    stale = [
        str(path)
        for path, text in files.items()
        if not (root / path).exists()
        or (root / path).read_bytes() != text.encode("utf-8")
    ]
    for folder, pattern in ((STUDENT_DIR, "*.ipynb"), (HIDDEN_DIR, "*.json")):
        for path in (root / folder.relative_to(ROOT)).glob(pattern):
            if path.relative_to(root) not in files:
                stale.append(f"{path.relative_to(root)} (no source any more)")
    return sorted(stale)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="only report stale files (exit 1 if any)"
    )
    args = parser.parse_args(argv)
    try:
        files = generate()
    except SourceError as error:
        print(f"make_student_versions: {error}", file=sys.stderr)
        return 2
    stale = stale_files(files)
    if args.check:
        for path in stale:
            print(f"stale: {path}")
        print(
            "make_student_versions: "
            + (
                "student versions are stale; run python tools/make_student_versions.py"
                if stale
                else "student versions are up to date"
            )
        )
        return 1 if stale else 0
    for path, text in files.items():
        (ROOT / path).parent.mkdir(parents=True, exist_ok=True)
        (ROOT / path).write_text(text, encoding="utf-8")
    for path in stale:
        if path.endswith("(no source any more)"):
            (ROOT / path.split(" ")[0]).unlink()
    print(
        f"make_student_versions: wrote {len(files)} files "
        f"({', '.join(sorted({p.stem for p in files}))})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
