"""How long tools/grade.py takes for a class of 30 students (4 notebooks each).

    python benchmarks/grading_speed.py [--students 30] [--timeout 60] [--jobs N] [--json FILE]

The class mixes right answers, untouched notebooks, typical mistakes, deleted checks, an
unreadable file and exactly one infinite loop (which costs one cell timeout, 60 s by default, as
in real grading). The class is built by tools/make_sample_class.py in a temporary folder and graded
with the same command an instructor runs; the script prints the wall time and the grade counts.
Target: under 10 minutes for 30 students on a 2-core machine.
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

# Profiles without an infinite loop, cycled; "dev" (syntax error, infinite loop, missing notebook) once.
CYCLE = ("ada", "ben", "chloe", "eve", "finn", "gus")


def build(folder: Path, students: int) -> dict[str, dict[str, samples.Plan]]:
    plans = {"s01-dev": samples.SAMPLE_CLASS["dev"]}
    for index in range(2, students + 1):
        profile = CYCLE[(index - 2) % len(CYCLE)]
        plans[f"s{index:02d}-{profile}"] = samples.SAMPLE_CLASS[profile]
    samples.build_class(folder, plans)
    return plans


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--timeout", type=float, default=60, help="per-cell timeout passed to the grader")
    parser.add_argument("--jobs", type=int, default=None, help="passed to the grader (default: CPU count)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="grading-speed-") as tmp:
        folder, out = Path(tmp) / "class", Path(tmp) / "report"
        plans = build(folder, args.students)
        notebooks = sum(len(p) for p in plans.values())
        command = [sys.executable, str(ROOT / "tools" / "grade.py"), str(folder), "--out", str(out),
                   "--timeout", f"{args.timeout:g}"] + (["--jobs", str(args.jobs)] if args.jobs else [])
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            print(done.stdout, done.stderr, file=sys.stderr)
            return 1
        with open(out / "report.csv", newline="", encoding="utf-8") as handle:
            counts = Counter(row["status"] for row in csv.DictReader(handle))
    result = {
        "students": args.students, "notebooks": notebooks, "cell_timeout_s": args.timeout,
        "wall_s": round(seconds, 1), "s_per_notebook": round(seconds / notebooks, 2),
        "grades": dict(counts), "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
        "python": platform.python_version(), "date": time.strftime("%Y-%m-%d"),
    }
    print(f"grading-speed: {args.students} students, {notebooks} notebooks (one infinite loop, cell timeout "
          f"{args.timeout:g} s) graded in {seconds / 60:.1f} min ({seconds:.0f} s, {seconds / notebooks:.1f} s per "
          f"notebook) on {os.cpu_count()} CPUs; grades: {dict(counts)}")
    print(f"grading-speed: target < 10 min: {'met' if seconds < 600 else 'MISSED'}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
