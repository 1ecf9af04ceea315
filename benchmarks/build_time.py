"""How long the book takes to build from cold, in units a reader can compare across
machines.

    python benchmarks/build_time.py [--enhance-seed 7] [--tests] [--json out.json]

1. Times the reference workload: a ResNet-50 forward pass, batch 8, 224 x 224, on the
   CPU (random weights, eval mode, ``torch.no_grad``; median of 7 after 2 warm-ups).
2. Copies the tracked files of this checkout to a temporary folder and runs a cold,
   strict build there (``tools/build-book.sh``: empty execution cache), then reads each
   notebook's execution seconds from the build's jupyter-cache.
3. Optionally times ``python -m cambook.enhance --seed N`` (``--enhance-seed``) and the
   pytest part of the test command (``--tests``).

Every figure is printed twice: in seconds on this machine, and scaled to the reference
machine of the budgets (where the reference workload takes 0.25 s): ``seconds * 0.25 /
reference``. Budgets on that machine: every chapter <= 60 s, all chapters <= 180 s, one
seed of the chapter 4 experiment <= 20 s. The script reports them and exits 1 if one is
missed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the budgets' reference machine: ResNet-50 b8 forward in 0.25 s
REFERENCE_SECONDS = 0.25
BUDGETS = {"chapter": 60.0, "all chapters": 180.0, "enhance seed": 20.0}


def reference_workload(repeats: int = 7) -> float:
    """Median seconds of a ResNet-50 batch-8 224 x 224 forward pass on the CPU."""
    import torch
    from torchvision.models import resnet50

    torch.manual_seed(0)
    model = resnet50().eval()
    images = torch.randn(8, 3, 224, 224)
    times = []
    with torch.no_grad():
        for index in range(repeats + 2):
            start = time.perf_counter()
            model(images)
            if index >= 2:
                times.append(time.perf_counter() - start)
    return statistics.median(times)


def tracked_copy(destination: Path) -> None:
    """The files git tracks (and untracked, not ignored ones), as a fresh clone would
    have."""
    listing = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, listing):
        source = ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def notebook_seconds(build_dir: Path) -> dict[str, float]:
    """Execution seconds of every notebook, from the build's jupyter-cache records."""
    from jupyter_cache import get_cache

    cache = get_cache(build_dir / ".jupyter_cache")
    seconds = {}
    for record in cache.list_cache_records():
        name = Path(record.uri).relative_to(build_dir.parent).as_posix()
        seconds[name] = float(record.data.get("execution_seconds", float("nan")))
    return dict(sorted(seconds.items()))


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=env, check=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--enhance-seed",
        type=int,
        nargs="*",
        default=[],
        help="also time `python -m cambook.enhance --seed N` for these seeds",
    )
    parser.add_argument(
        "--tests", action="store_true", help="also time the pytest part"
    )
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copy")
    args = parser.parse_args(argv)

    reference = reference_workload()
    scale = REFERENCE_SECONDS / reference
    print(
        f"reference workload (ResNet-50 b8 forward, CPU): {reference:.3f} s "
        f"-> figures x {scale:.2f} to the 0.25 s reference machine"
    )
    workdir = Path(tempfile.mkdtemp(prefix="cam-book-build-"))
    # the copy's camlib, not the editable install of this checkout
    env = {
        **os.environ,
        "VENV": os.environ.get("VENV", sys.prefix),
        "PYTHONPATH": str(workdir),
    }
    rows: list[dict] = []
    try:
        tracked_copy(workdir)
        build = timed(["bash", "tools/build-book.sh"], workdir, env)
        chapters = notebook_seconds(workdir / "_build")
        for name, seconds in chapters.items():
            rows.append(
                {"what": name, "seconds": seconds, "budget": BUDGETS["chapter"]}
            )
        rows.append(
            {
                "what": "all chapters",
                "seconds": sum(chapters.values()),
                "budget": BUDGETS["all chapters"],
            }
        )
        rows.append(
            {
                "what": "whole build (tools/build-book.sh, venv ready)",
                "seconds": build,
                "budget": None,
            }
        )
        for seed in args.enhance_seed:
            seconds = timed(
                [sys.executable, "-m", "cambook.enhance", "--seed", str(seed)],
                workdir,
                env,
            )
            rows.append(
                {
                    "what": f"python -m cambook.enhance --seed {seed}",
                    "seconds": seconds,
                    "budget": BUDGETS["enhance seed"],
                }
            )
        if args.tests:
            seconds = timed(
                [
                    sys.executable,
                    "-m",
                    "pytest",
                    "-q",
                    "-p",
                    "no:cacheprovider",
                    "tests",
                ],
                workdir,
                env,
            )
            rows.append(
                {
                    "what": "pytest tests (after the build)",
                    "seconds": seconds,
                    "budget": None,
                }
            )
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"kept {workdir}")

    failed = []
    print(
        f"\n| what | seconds here | x {scale:.2f}: reference-machine seconds | budget |"
    )
    print("|---|---:|---:|---:|")
    for row in rows:
        row["reference_seconds"] = row["seconds"] * scale
        within = row["budget"] is None or row["reference_seconds"] <= row["budget"]
        row["within_budget"] = within
        if not within:
            failed.append(row["what"])
        budget = (
            ""
            if row["budget"] is None
            else f"<= {row['budget']:.0f} s" + ("" if within else " MISSED")
        )
        print(
            f"| {row['what']} | {row['seconds']:.1f} | "
            f"{row['reference_seconds']:.1f} | {budget} |"
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "date": time.strftime("%Y-%m-%d"),
                    "machine": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(),
                    "reference_seconds": reference,
                    "rows": rows,
                },
                indent=1,
            )
        )
    if failed:
        print(f"budgets missed: {failed}")
        return 1
    print("all budgets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
