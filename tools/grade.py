"""Grade a folder of submitted exercise notebooks with nbval; write report.csv and report.md.

    python tools/grade.py SUBMISSIONS_DIR --out REPORT_DIR [--timeout 60] [--jobs N]

Layout: ``SUBMISSIONS_DIR/<student>/<notebook>.ipynb``, one folder per student, notebooks named as
handed out (``ex01_overview.ipynb`` ... ``ex04_enhanced.ipynb``); other files are listed in the
report as ignored.

For each submission the grader builds a graded copy: the student's cells with outputs cleared;
each visible check cell replaced by the original from the key (``coursework/hidden/*.json``,
written by ``tools/make_student_versions.py``), so an edited check is restored, and a deleted one
is put back and the exercise marked failed; any hidden-check cell in the submission dropped; then
the key's hidden checks appended. The copy is run by pytest + nbval (``--nbval-lax
--nbval-current-env``, a sanitize file, a per-cell timeout), one process per notebook, several in
parallel, each under a wall-clock limit. ``tools/grade_plugin.py`` records each cell's outcome.

An exercise **passed** when all its check cells (visible and hidden) ran without error and none
had been deleted; it **failed** when a check's ``assert`` failed (the report quotes its message)
or a check cell was deleted, or the notebook was not submitted; it **errored** when a check or
the exercise's own code raised anything else (NotImplementedError for an untouched exercise, a
syntax error, a timeout), or the notebook could not be read or run. The grader itself never
stops on a bad submission.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import copy
import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
KEY_DIR = ROOT / "coursework" / "hidden"
SANITIZE = ROOT / "coursework" / "sanitize.cfg"
CHECK_ROLES = ("check", "hidden-check")


# --- the key -------------------------------------------------------------------------------------


def load_keys(key_dir: Path = KEY_DIR) -> dict[str, dict]:
    """``{notebook name: key}`` for every notebook the grader knows."""
    keys = {path.stem: json.loads(path.read_text(encoding="utf-8")) for path in sorted(key_dir.glob("*.json"))}
    if not keys:
        raise SystemExit(f"grade: no grading keys in {key_dir}; run python tools/make_student_versions.py")
    return keys


def _normalised(source: str) -> str:
    return "\n".join(line.rstrip() for line in source.strip().splitlines())


def _exercise_of(cell) -> str | None:
    for tag in cell.get("metadata", {}).get("tags", []):
        if isinstance(tag, str) and tag.startswith("exercise-"):
            return tag[len("exercise-"):]
    return None


# --- building the graded copy --------------------------------------------------------------------


@dataclass
class Prepared:
    notebook: object  # nbformat.NotebookNode to run
    deleted: dict[str, list[str]] = field(default_factory=dict)  # exercise -> visible check ids
    restored: list[str] = field(default_factory=list)  # check ids whose edited text was restored
    dropped_hidden: int = 0


def _code_cell(source: str, grading: dict, cell_id: str):
    cell = nbformat.v4.new_code_cell(source, metadata={"grading": grading})
    cell["id"] = cell_id
    return cell


def prepare(submission, key: dict) -> Prepared:
    """The graded copy of a submission (an nbformat v4 notebook) for one key."""
    checks = {check["id"]: (exercise["id"], check) for exercise in key["exercises"] for check in exercise["checks"]}
    by_text = {_normalised(check["source"]): check_id for check_id, (_, check) in checks.items()}
    hidden_text = {_normalised(h["source"]) for e in key["exercises"] for h in e["hidden_checks"]}
    hidden_ids = {h["id"] for e in key["exercises"] for h in e["hidden_checks"]}
    solutions = {cell_id: exercise["id"] for exercise in key["exercises"] for cell_id in exercise["solutions"]}
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
        matched = cell_id if cell_id in checks and cell_id not in found else by_text.get(text)
        if matched is not None and matched not in found:
            found.add(matched)
            exercise, check = checks[matched]
            if text != _normalised(check["source"]):
                prepared.restored.append(matched)
            cells.append(_code_cell(check["source"], {"role": "check", "exercise": exercise, "key": matched},
                                    f"k-{matched}"))
            continue
        tags = cell.get("metadata", {}).get("tags", [])
        if cell_id in hidden_ids or "hidden-check" in tags or text in hidden_text:
            prepared.dropped_hidden += 1
            continue
        exercise = solutions.get(cell_id)
        if exercise is None and "solution" in tags:
            exercise = _exercise_of(cell)
        grading = {"role": "solution", "exercise": exercise} if exercise else {"role": "student"}
        cells.append(_code_cell(cell.get("source", ""), grading, f"s{index:03d}"))
    # Put back deleted visible checks after the exercise's last cell (else at the end).
    for exercise in key["exercises"]:
        for check in exercise["checks"]:
            if check["id"] in found:
                continue
            prepared.deleted.setdefault(exercise["id"], []).append(check["id"])
            restored = _code_cell(check["source"], {"role": "check", "exercise": exercise["id"], "key": check["id"]},
                                  f"k-{check['id']}")
            positions = [i for i, c in enumerate(cells) if c.metadata.get("grading", {}).get("exercise") == exercise["id"]]
            cells.insert(positions[-1] + 1 if positions else len(cells), restored)
    for exercise in key["exercises"]:
        for hidden in exercise["hidden_checks"]:
            cells.append(_code_cell(hidden["source"], {"role": "hidden-check", "exercise": exercise["id"],
                                                       "key": hidden["id"]}, f"h-{hidden['id']}"))
    prepared.notebook.cells = cells
    prepared.notebook.metadata = {
        "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    return prepared


# --- running -------------------------------------------------------------------------------------


@dataclass
class Run:
    records: list[dict]
    killed: bool  # the wall-clock limit for the whole notebook was reached
    returncode: int | None
    tail: str  # end of pytest's output, for notes when nothing was recorded


def _kill_tree(process: subprocess.Popen) -> None:
    try:
        import psutil  # installed with ipykernel

        children = psutil.Process(process.pid).children(recursive=True)
    except Exception:  # psutil missing or the process already gone
        children = []
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    for child in children:  # the kernel runs in a session of its own
        try:
            child.kill()
        except Exception:
            pass


def run_notebook(path: Path, cell_timeout: float, notebook_timeout: float, threads: int) -> Run:
    """Run one graded notebook under pytest + nbval in a fresh process; never raises."""
    results = path.with_suffix(".results.jsonl")
    ini = path.parent / "pytest.ini"
    ini.write_text("[pytest]\n", encoding="utf-8")
    command = [
        sys.executable, "-m", "pytest", path.name,
        "--nbval-lax", "--nbval-current-env", "--nbval-sanitize-with", str(SANITIZE),
        f"--nbval-cell-timeout={cell_timeout:g}",
        "-p", "no:cacheprovider", "-p", "grade_plugin", f"--grading-results={results}",
        "-c", str(ini), "--rootdir", str(path.parent), "-q", "--no-header", "-W", "ignore",
    ]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parent), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["MPLBACKEND"] = "Agg"
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = str(threads)
    env.pop("PYTEST_ADDOPTS", None)
    killed, returncode, output = False, None, ""
    process = subprocess.Popen(command, cwd=path.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        output = process.communicate(timeout=notebook_timeout)[0].decode("utf-8", "replace")
        returncode = process.returncode
    except subprocess.TimeoutExpired:
        killed = True
        _kill_tree(process)
        output = process.communicate()[0].decode("utf-8", "replace")
    records = []
    if results.exists():
        for line in results.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a kill
                pass
    return Run(records, killed, returncode, output[-2000:])


# --- turning cell results into grades ------------------------------------------------------------


def load_sanitizer(path: Path = SANITIZE) -> list[tuple[re.Pattern, str]]:
    """The (regex, replacement) pairs of an nbval sanitize file, also applied to report messages."""
    pairs, regex = [], None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("regex:"):
            regex = line[len("regex:"):].strip()
        elif line.startswith("replace:") and regex is not None:
            pairs.append((re.compile(regex), line[len("replace:"):].strip()))
            regex = None
    return pairs


_SANITIZER: list[tuple[re.Pattern, str]] = []


def clean(text: str, limit: int = 500) -> str:
    """One line, sanitised (addresses, paths, timings), at most ``limit`` characters."""
    for pattern, replacement in _SANITIZER:
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


def _describe(record: dict, cell_timeout: float) -> tuple[str, str]:
    """``(kind, text)`` of a cell that did not pass; kind: timeout, not-run or exception."""
    if record.get("timed_out"):
        return "timeout", (f"timed out: did not finish within {cell_timeout:g} s and was stopped "
                           "(an infinite loop, or code that crashed the Python kernel)")
    if record["outcome"] == "skipped":
        return "not-run", f"not run: {record['evalue']}"
    name, value = record.get("ename") or "Error", clean(record.get("evalue", ""))
    if name == "RuntimeError" and "Kernel dead" in value:
        return "not-run", "not run: the Python kernel had stopped (an earlier cell crashed it or could not be stopped)"
    return "exception", f"{name}: {value}" if value else name


def grade_notebook(student: str, key: dict, prepared: Prepared | None, run: Run | None,
                   problem: str | None, cell_timeout: float) -> tuple[list[Grade], list[str]]:
    """Per-exercise grades and notebook-level notes."""
    name = key["notebook"]
    notes: list[str] = []
    if problem is not None:
        status = "failed" if problem == "not submitted" else "errored"
        return [Grade(student, name, e["id"], e["title"], status, problem) for e in key["exercises"]], notes
    assert prepared is not None and run is not None
    by_key = {r["grading"].get("key"): r for r in run.records if r["grading"].get("key")}
    if run.killed:
        notes.append(f"{name}: stopped at the time limit for a whole notebook; cells that had not run count as errored")
    if not run.records:
        notes.append(f"{name}: no cell ran; pytest said: {clean(run.tail[-300:])}")
    for record in run.records:
        grading = record["grading"]
        if grading.get("role") in ("student", "solution") and record["outcome"] == "error":
            kind, text = _describe(record, cell_timeout)
            if kind == "not-run":
                continue
            where = f"exercise {grading['exercise']}'s code" if grading.get("role") == "solution" else "a cell of yours"
            notes.append(f"{name}: {where} (cell {record['cell']}) {'' if kind == 'timeout' else 'raised '}{text}")
    dead = [r["cell"] for r in run.records if _describe(r, cell_timeout)[0] == "not-run" and r["outcome"] == "error"]
    if dead:
        notes.append(f"{name}: the Python kernel had stopped before cell {dead[0]}; later cells did not run")
    if prepared.restored:
        notes.append(f"{name}: edited check cells were restored to the original before grading: {', '.join(prepared.restored)}")
    if prepared.dropped_hidden:
        notes.append(f"{name}: {prepared.dropped_hidden} hidden-check cell(s) found in the submission were replaced by the key's")
    grades = []
    for exercise in key["exercises"]:
        ex_id = exercise["id"]
        visible = {c["id"] for c in exercise["checks"]}
        solution_errors = [r for r in run.records if r["grading"].get("role") == "solution"
                           and r["grading"].get("exercise") == ex_id and r["outcome"] == "error"
                           and _describe(r, cell_timeout)[0] != "not-run"]
        grade = Grade(student, name, ex_id, exercise["title"], "passed")
        for check_id in [c["id"] for c in exercise["checks"]] + [h["id"] for h in exercise["hidden_checks"]]:
            record = by_key.get(check_id)
            if record is not None and record["outcome"] == "passed":
                continue
            grade.check = check_id
            label = "check" if check_id in visible else "hidden check"
            if record is None:
                grade.status = "errored"
                grade.message = "not run: grading of this notebook was stopped before this check"
            elif record["outcome"] == "error" and record["ename"] == "AssertionError" and not record.get("timed_out"):
                grade.status = "failed"
                grade.message = clean(record["evalue"]) or f"{label} {check_id} failed (an assert without a message)"
            else:
                grade.status = "errored"
                kind, text = _describe(record, cell_timeout)
                if kind == "exception" and solution_errors:
                    first_kind, first_text = _describe(solution_errors[0], cell_timeout)
                    grade.message = f"your code for exercise {ex_id} {'' if first_kind == 'timeout' else 'raised '}{first_text}"
                elif kind == "not-run":
                    grade.message = text
                else:
                    grade.message = f"{label} {check_id} {'' if kind == 'timeout' else 'raised '}{text}"
            break
        if ex_id in prepared.deleted:
            outcome = grade.status
            grade.status = "failed"
            grade.check = prepared.deleted[ex_id][0]
            grade.message = (f"check cells deleted ({', '.join(prepared.deleted[ex_id])}); they were put back "
                             f"for grading (result: {outcome}), but an exercise whose checks were deleted does not pass")
        grades.append(grade)
    return grades, notes


# --- the whole folder ----------------------------------------------------------------------------


def discover(submissions: Path, keys: dict[str, dict]) -> tuple[list[str], dict[str, dict[str, Path]], list[str]]:
    """Students, their notebooks by name, and notes about files that are not gradable."""
    students, found, notes = [], {}, []
    for entry in sorted(submissions.iterdir()):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            notes.append(f"ignored {entry.name}: submissions go in one folder per student")
            continue
        students.append(entry.name)
        found[entry.name] = {}
        for path in sorted(entry.iterdir()):
            if path.suffix == ".ipynb" and path.stem in keys:
                found[entry.name][path.stem] = path
            elif not path.name.startswith(".") and path.name != ".ipynb_checkpoints":
                notes.append(f"{entry.name}: ignored {path.name} (expected {', '.join(f'{k}.ipynb' for k in keys)})")
    return students, found, notes


def _read_error(error: Exception) -> str:
    if isinstance(error, (nbformat.reader.NotJSONError, json.JSONDecodeError, UnicodeDecodeError)):
        return "not valid JSON; is the file complete?"
    return f"{type(error).__name__}: {clean(str(error), 150)}"


def grade_folder(submissions: Path, out: Path, cell_timeout: float = 60, jobs: int | None = None,
                 notebook_timeout: float | None = None, keep_work: bool = False) -> list[Grade]:
    """Grade every submission under ``submissions``; write ``out/report.csv`` and ``out/report.md``."""
    global _SANITIZER
    _SANITIZER = load_sanitizer()
    keys = load_keys()
    jobs = max(1, jobs or os.cpu_count() or 1)
    threads = max(1, (os.cpu_count() or 1) // jobs)
    notebook_timeout = notebook_timeout or max(120.0, 3 * cell_timeout)
    students, found, folder_notes = discover(submissions, keys)
    work = Path(tempfile.mkdtemp(prefix="grade-"))
    tasks = []  # (student index, student, notebook name, prepared or None, problem or None)
    for index, student in enumerate(students):
        for name, key in keys.items():
            path = found[student].get(name)
            if path is None:
                tasks.append((index, student, name, None, "not submitted"))
                continue
            try:
                submission = nbformat.read(path, as_version=4)
                prepared = prepare(submission, key)
            except Exception as error:  # not JSON, not a notebook, ...
                tasks.append((index, student, name, None, f"notebook cannot be read ({_read_error(error)})"))
                continue
            tasks.append((index, student, name, prepared, None))

    def execute(task):
        index, student, name, prepared, problem = task
        if prepared is None:
            return task, None
        folder = work / f"{index:04d}" / name
        folder.mkdir(parents=True)
        path = folder / f"{name}.ipynb"
        nbformat.write(prepared.notebook, path)
        return task, run_notebook(path, cell_timeout, notebook_timeout, threads)

    results = {}
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
            for task, run in pool.map(execute, tasks):
                results[(task[1], task[2])] = (task, run)
    finally:
        if not keep_work:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"grade: graded copies kept in {work}")
    grades, notes = [], {student: [] for student in students}
    for student in students:
        for name, key in keys.items():
            (_, _, _, prepared, problem), run = results[(student, name)]
            notebook_grades, notebook_notes = grade_notebook(student, key, prepared, run, problem, cell_timeout)
            grades += notebook_grades
            notes[student] += notebook_notes
    write_reports(out, grades, notes, folder_notes, keys, cell_timeout)
    return grades


def write_reports(out: Path, grades: list[Grade], notes: dict[str, list[str]], folder_notes: list[str],
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("submissions", type=Path, help="folder with one subfolder of notebooks per student")
    parser.add_argument("--out", type=Path, required=True, help="where report.csv and report.md go")
    parser.add_argument("--timeout", type=float, default=60, help="seconds a cell may run (default 60)")
    parser.add_argument("--notebook-timeout", type=float, default=None,
                        help="seconds a whole notebook may run (default max(120, 3 x timeout))")
    parser.add_argument("--jobs", type=int, default=None, help="notebooks graded in parallel (default: CPU count)")
    parser.add_argument("--keep-work", action="store_true", help="keep the graded copies (for debugging)")
    args = parser.parse_args(argv)
    if not args.submissions.is_dir():
        parser.error(f"{args.submissions} is not a folder")
    start = time.perf_counter()
    grades = grade_folder(args.submissions, args.out, args.timeout, args.jobs, args.notebook_timeout, args.keep_work)
    counts = {status: sum(g.status == status for g in grades) for status in ("passed", "failed", "errored")}
    students = len({g.student for g in grades})
    print(f"grade: {students} students, {len(grades)} exercise grades: "
          + ", ".join(f"{n} {s}" for s, n in counts.items())
          + f"; {time.perf_counter() - start:.1f} s; wrote {args.out / 'report.md'} and {args.out / 'report.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
