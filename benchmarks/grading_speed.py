"""How long tools/grade.py takes for a class of 30 students (6 notebooks each).

    python benchmarks/grading_speed.py [--students 30] [--timeout 60] [--jobs N]
                                       [--json FILE]

The class mixes right answers, untouched notebooks, typical mistakes, deleted checks, an
unreadable file and exactly one infinite loop (which costs one cell timeout, 60 s by
default, as in real grading); one student of 30 hands in 3 notebooks, the others 6. The
class is built by tools/make_sample_class.py in a temporary folder and graded with the
same command an instructor runs (as root here: every notebook and hidden-check process
sandboxed). The script prints the wall time, the CPU time of the grader and its
children, and both scaled to the reference machine of the budgets
(benchmarks/build_time.py: ResNet-50 batch-8 forward in 0.25 s), timed before and after
the grading; the load average says how busy the machine was. Target: under 10 minutes
for 30 students on 2 cores at the reference speed.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import make_sample_class as samples  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from build_time import REFERENCE_SECONDS, reference_workload  # noqa: E402

# Profiles without an infinite loop, cycled; "dev" (syntax error, infinite loop, missing
# notebook) once.
CYCLE = ("ada", "ben", "chloe", "eve", "finn", "gus")


def build(folder: Path, students: int) -> dict[str, dict[str, samples.Plan]]:
    plans = {"s01-dev": samples.SAMPLE_CLASS["dev"]}
    for index in range(2, students + 1):
        profile = CYCLE[(index - 2) % len(CYCLE)]
        plans[f"s{index:02d}-{profile}"] = samples.SAMPLE_CLASS[profile]
    samples.build_class(folder, plans)
    return plans


def grade_once(root: Path, folder: Path, out: Path, args) -> tuple | None:
    """(wall s, CPU s of the grader and its children, grade counts) of one grading."""
    command = [
        sys.executable,
        str(root / "tools" / "grade.py"),
        str(folder),
        "--out",
        str(out),
        "--timeout",
        f"{args.timeout:g}",
    ] + (["--jobs", str(args.jobs)] if args.jobs else [])
    env = dict(os.environ, PYTHONPATH=str(root))
    cpu_before, start = _children_cpu(), time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds, cpu = time.perf_counter() - start, _children_cpu() - cpu_before
    if done.returncode != 0:
        print(done.stdout, done.stderr, file=sys.stderr)
        return None
    with open(out / "report.csv", newline="", encoding="utf-8") as handle:
        return seconds, cpu, Counter(row["status"] for row in csv.DictReader(handle))


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument(
        "--timeout",
        type=float,
        default=60,
        help="per-cell timeout passed to the grader",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="passed to the grader (default: CPU count)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--compare",
        metavar="REV",
        help="also grade the class with the grader of this git revision",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=7,
        help="timed passes of the reference workload, before and after",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="grading-speed-") as tmp:
        folder = Path(tmp) / "class"
        plans = build(folder, args.students)
        os.chmod(tmp, 0o755)  # the sandbox's accounts read the class
        notebooks = sum(len(p) for p in plans.values())
        reference_before, load_before = (
            reference_workload(args.repeats),
            os.getloadavg()[0],
        )
        runs = {"this": grade_once(ROOT, folder, Path(tmp) / "report", args)}
        if args.compare:
            earlier = Path(tmp) / "earlier"
            earlier.mkdir()
            archive = subprocess.run(
                ["git", "-C", str(ROOT), "archive", args.compare],
                capture_output=True,
                check=True,
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(earlier)], input=archive, check=True)
            runs[args.compare] = grade_once(
                earlier, folder, Path(tmp) / "report-earlier", args
            )
        load_after = os.getloadavg()[0]
        reference_after = reference_workload(args.repeats)
    if any(run is None for run in runs.values()):
        return 1
    seconds, cpu, counts = runs["this"]
    reference = (reference_before + reference_after) / 2
    scale = REFERENCE_SECONDS / reference
    result = {
        "students": args.students,
        "notebooks": notebooks,
        "cell_timeout_s": args.timeout,
        "wall_s": round(seconds, 1),
        "s_per_notebook": round(seconds / notebooks, 2),
        "cpu_s": round(cpu, 1),
        "reference_workload_s": [round(reference_before, 3), round(reference_after, 3)],
        "wall_reference_s": round(seconds * scale, 1),
        "cpu_reference_s": round(cpu * scale, 1),
        "load_average": [round(load_before, 2), round(load_after, 2)],
        "sandboxed": os.geteuid() == 0,
        "target_s": 600,
        "grades": dict(counts),
        "cpus": os.cpu_count(),
        "compared_with": {
            rev: {
                "wall_s": round(w, 1),
                "cpu_s": round(c, 1),
                "grades": dict(g),
                "wall_ratio": round(seconds / w, 2),
                "cpu_ratio": round(cpu / c, 2),
            }
            for rev, (w, c, g) in runs.items()
            if rev != "this"
        },
        "machine": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    print(
        f"grading-speed: {args.students} students, {notebooks} notebooks (one "
        "infinite loop, cell timeout "
        f"{args.timeout:g} s) graded in {seconds / 60:.1f} min ({seconds:.0f} "
        f"s, {seconds / notebooks:.1f} s per "
        f"notebook) on {os.cpu_count()} CPUs; grades: {dict(counts)}"
    )
    print(
        f"grading-speed: CPU time {cpu:.0f} s; reference workload "
        f"{reference_before:.3f} s "
        f"before, {reference_after:.3f} s after (x {scale:.2f} to the "
        "reference machine); "
        f"load average {load_before:.1f} before, {load_after:.1f} after"
    )
    print(
        f"grading-speed: at the reference speed {seconds * scale / 60:.1f} min wall, "
        f"{cpu * scale / 60 / max(1, os.cpu_count() or 1):.1f} min of CPU per "
        "core; target "
        f"< 10 min: {'met' if seconds * scale < 600 else 'MISSED'}"
    )
    for rev, (w, c, g) in runs.items():
        if rev != "this":
            print(
                f"grading-speed: the grader at {rev}: {w:.0f} s wall, {c:.0f} "
                "s CPU, grades "
                f"{dict(g)}; this one takes x {seconds / w:.2f} its wall time, "
                f"x {cpu / c:.2f} its CPU time"
            )
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
