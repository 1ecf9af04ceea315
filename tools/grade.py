"""Grade a folder of submitted exercise notebooks; write report.csv and report.md.

    python tools/grade.py SUBMISSIONS_DIR --out REPORT_DIR [--timeout 60] [--jobs N]
                          [--secret FILE] [--memory-mb 8192]

Layout: ``SUBMISSIONS_DIR/<student>/<notebook>.ipynb``, one folder per student,
notebooks named as handed out (``ex01_overview.ipynb`` ...); other files are listed in
the report as ignored.

For each submission the grader builds a graded copy: the student's cells with outputs
cleared; each visible check cell replaced by the original from the key
(``coursework/hidden/*.json``, written by ``tools/make_student_versions.py``), so an
edited check is restored, and a deleted one is put back and the exercise marked failed;
any hidden-check cell in the submission dropped. The copy is run by pytest + nbval
(``--nbval-lax --nbval-current-env``, a sanitize file, a per-cell timeout) in its own
process; ``tools/grade_plugin.py`` records each cell's outcome: the student's feedback.

The hidden checks never run beside the student's code. For the exercises whose visible
checks passed, a second child process executes the submission's code cells (not the
check cells) and calls its functions on the hidden inputs; it hands back plain data,
which this process loads without running code and compares with the reference solution's
results (tools/grade_hidden.py). Every child that runs student code is limited in
memory, CPU time, output, file size and processes, in a scratch folder, without network,
as an account of its own when the grader runs as root (tools/grade_sandbox.py).

An exercise **passed** when all its check cells (visible and hidden) passed and none had
been deleted; it **failed** when a check's ``assert`` failed (the report quotes its
message) or a check cell was deleted, or the notebook was not submitted; it **errored**
when a check or the exercise's own code raised anything else (NotImplementedError for an
untouched exercise, a syntax error, a timeout, a limit), or the notebook could not be
read or run. The grader itself never stops on a bad submission.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat

import grade_hidden as hidden
import grade_sandbox as sandbox
import grade_report as report
from grade_report import Grade, clean, grade_notebook, write_reports  # noqa: F401
from grade_prepare import Prepared, prepare  # noqa: F401 - prepare is part of this API
from grade_run import Settings, run_hidden, run_notebook

ROOT = Path(__file__).resolve().parents[1]
KEY_DIR = ROOT / "coursework" / "hidden"
SANITIZE = ROOT / "coursework" / "sanitize.cfg"
CHECK_ROLES = ("check", "hidden-check")


# --- the key --------------------------------------------------------------------------


def load_keys(key_dir: Path = KEY_DIR) -> dict[str, dict]:
    """``{notebook name: key}`` for every notebook the grader knows."""
    keys = {
        path.stem: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(key_dir.glob("*.json"))
    }
    if not keys:
        raise SystemExit(
            f"grade: no grading keys in {key_dir}; "
            "run python tools/make_student_versions.py"
        )
    return keys


# --- the whole folder -----------------------------------------------------------------


def discover(
    submissions: Path, keys: dict[str, dict]
) -> tuple[list[str], dict[str, dict[str, Path]], list[str]]:
    """Students, their notebooks by name, and notes about files that cannot be
    graded."""
    students, found, notes = [], {}, []
    for entry in sorted(submissions.iterdir()):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            notes.append(
                f"ignored {entry.name}: submissions go in one folder per student"
            )
            continue
        students.append(entry.name)
        found[entry.name] = {}
        for path in sorted(entry.iterdir()):
            if path.suffix == ".ipynb" and path.stem in keys:
                found[entry.name][path.stem] = path
            elif not path.name.startswith(".") and path.name != ".ipynb_checkpoints":
                notes.append(
                    f"{entry.name}: ignored {path.name} "
                    f"(expected {', '.join(f'{k}.ipynb' for k in keys)})"
                )
    return students, found, notes


def _read_error(error: Exception) -> str:
    if isinstance(
        error, (nbformat.reader.NotJSONError, json.JSONDecodeError, UnicodeDecodeError)
    ):
        return "not valid JSON; is the file complete?"
    return f"{type(error).__name__}: {clean(str(error), 150)}"


def grade_folder(
    submissions: Path,
    out: Path,
    cell_timeout: float = 60,
    jobs: int | None = None,
    notebook_timeout: float | None = None,
    keep_work: bool = False,
    secret: bytes | None = None,
    limits: sandbox.Limits | None = None,
) -> list[Grade]:
    """Grade every submission under ``submissions``; write ``out/report.csv`` and
    ``out/report.md``. ``secret``: draw the hidden inputs from it (see grade_hidden)."""
    report.SANITIZER[:] = report.load_sanitizer(SANITIZE)
    limits = limits or sandbox.Limits()
    report.LIMITS = limits
    keys = load_keys()
    jobs = max(1, jobs or os.cpu_count() or 1)
    threads = max(1, (os.cpu_count() or 1) // jobs)
    notebook_timeout = notebook_timeout or max(120.0, 3 * cell_timeout)
    students, found, folder_notes = discover(submissions, keys)
    work = Path(tempfile.mkdtemp(prefix="grade-"))
    work.chmod(0o711)  # each account may enter its own folder, and list none
    # (student index, student, notebook name, prepared or None, problem or None)
    tasks = []
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
                tasks.append(
                    (
                        index,
                        student,
                        name,
                        None,
                        f"notebook cannot be read ({_read_error(error)})",
                    )
                )
                continue
            tasks.append((index, student, name, prepared, None))
    seeds = {name: hidden.seeds(key, secret) for name, key in keys.items()}

    def expected(name):
        return name, hidden.reference(
            keys[name],
            ROOT / keys[name]["source"],
            seeds[name],
            work / f"reference-{name}",
            limits,
            cell_timeout,
            threads,
        )

    def execute(task):
        index, student, name, prepared, problem = task
        if prepared is None:
            return task, None
        folder = work / f"{index:04d}" / name
        folder.mkdir(parents=True)
        folder.parent.chmod(0o711)
        path = folder / f"{name}.ipynb"
        nbformat.write(prepared.notebook, path)
        with sandbox.Account(index) as account:
            account.give(folder)
            run = run_notebook(path, keys[name], settings, account)
            run_hidden(
                run,
                prepared,
                keys[name],
                folder.parent / f"{name}-hidden",
                settings,
                account,
            )
        return task, run

    results = {}
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
            wants = dict(
                pool.map(expected, sorted({t[2] for t in tasks if t[3] is not None}))
            )
            settings = Settings(
                cell_timeout, notebook_timeout, threads, limits, wants, seeds
            )
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
            notebook_grades, notebook_notes = grade_notebook(
                student, key, prepared, run, problem, cell_timeout
            )
            grades += notebook_grades
            notes[student] += notebook_notes
    write_reports(out, grades, notes, folder_notes, keys, cell_timeout)
    return grades


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "submissions",
        type=Path,
        help="folder with one subfolder of notebooks per student",
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="where report.csv and report.md go"
    )
    parser.add_argument(
        "--timeout", type=float, default=60, help="seconds a cell may run (default 60)"
    )
    parser.add_argument(
        "--notebook-timeout",
        type=float,
        default=None,
        help="seconds a whole notebook may run (default max(120, 3 x timeout))",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="notebooks graded in parallel (default: CPU count)",
    )
    parser.add_argument(
        "--secret",
        type=Path,
        default=None,
        help="a private file whose bytes draw the hidden inputs (see the guide)",
    )
    parser.add_argument(
        "--memory-mb",
        type=int,
        default=sandbox.Limits.memory_mb,
        help="address space per process running student code, MiB "
        f"(default {sandbox.Limits.memory_mb})",
    )
    parser.add_argument(
        "--keep-work",
        action="store_true",
        help="keep the graded copies (for debugging)",
    )
    args = parser.parse_args(argv)
    if not args.submissions.is_dir():
        parser.error(f"{args.submissions} is not a folder")
    secret = None
    if args.secret is not None:
        try:
            secret = args.secret.read_bytes()
        except OSError as error:
            parser.error(f"--secret {args.secret}: cannot read it ({error.strerror})")
        if len(secret.strip()) < 16:
            parser.error(
                f"--secret {args.secret}: expected at least 16 bytes of secret, "
                f"got {len(secret.strip())}"
            )
    if not sandbox.privileged():
        print(
            "grade: not running as root: student code runs under your own account "
            "(limits apply, but not the separate account; see the guide's Limits)",
            file=sys.stderr,
        )
    start = time.perf_counter()
    limits = sandbox.Limits(memory_mb=args.memory_mb)
    grades = grade_folder(
        args.submissions,
        args.out,
        args.timeout,
        args.jobs,
        args.notebook_timeout,
        args.keep_work,
        secret,
        limits,
    )
    counts = {
        status: sum(g.status == status for g in grades)
        for status in ("passed", "failed", "errored")
    }
    students = len({g.student for g in grades})
    print(
        f"grade: {students} students, {len(grades)} exercise grades: "
        + ", ".join(f"{n} {s}" for s, n in counts.items())
        + f"; {time.perf_counter() - start:.1f} s; wrote {args.out / 'report.md'} and "
        f"{args.out / 'report.csv'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
