"""Score-CAM against its floor, timed with and without the memory-measuring settings.

    python benchmarks/timing_conditions.py [--blocks 3] [--reps 2] [--json PATH]

Until 2026-11-28 ``family_speed.py`` timed Score-CAM in the same calls that measured its peak
memory: glibc's mmap threshold fixed at 64 KiB (every block over it mapped and unmapped, so RSS
follows the memory in use) and a thread sampling RSS every 0.5 ms. This script times the floor
(1,024 masked forwards, ResNet-18, channels-last, batch 32, random inputs of 224 x 224) and
camlib's Score-CAM of 2 images at ``layer4`` (batch size 32, its default until 2026-11-29; its
layout trial runs in a warm-up call first) in ABBA blocks (floor, camlib, camlib, floor, then
camlib, floor, floor, camlib), under each condition in its own process (the threshold cannot be
unfixed), the conditions alternating ``--reps`` times:

- ``default``: glibc's default allocator, no sampling thread (what a user runs);
- ``memory``: the threshold fixed, the heap trimmed before each call, the sampling thread on.

It reports each block's times and camlib / floor, and per condition the median floor time and
median ratio. Always exits 0.
"""
from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONDITIONS = ("default", "memory")


def blocks(condition: str, count: int) -> list[dict]:
    """``count`` ABBA blocks under ``condition``, in this process."""
    import torch
    import torchvision

    sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
    import camlib
    from speed_memory import Glibc, RssSampler

    glibc = Glibc()
    if condition == "memory" and not glibc.fix_mmap_threshold():
        raise SystemExit("glibc's mallopt is not available here")
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        classes = model(x).argmax(1, keepdim=True)

    def floor() -> None:
        masked = torch.randn(32, 3, 224, 224).contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            for _ in range(0, 1024, 32):
                model(masked)

    def ours() -> None:
        camlib.explain(model, x, method="scorecam", layers="layer4", classes=classes,
                       batch_size=32)

    def timed(call) -> float:
        gc.collect()
        if condition == "memory":
            glibc.trim()
            with RssSampler():
                start = time.perf_counter()
                call()
                return time.perf_counter() - start
        start = time.perf_counter()
        call()
        return time.perf_counter() - start

    ours()  # the layout trial runs here; later calls reuse its choice
    floor()
    out = []
    for j in range(count):
        order = (["floor", "camlib", "camlib", "floor"] if j % 2 == 0
                 else ["camlib", "floor", "floor", "camlib"])
        times = {"floor": [], "camlib": []}
        for name in order:
            times[name].append(timed(floor if name == "floor" else ours))
        out.append({"condition": condition, "order": order, **times,
                    "ratio": sum(times["camlib"]) / sum(times["floor"])})
        print(json.dumps(out[-1]), flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blocks", type=int, default=3)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--child", choices=CONDITIONS, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        blocks(args.child, args.blocks)
        return 0
    sys.path[:0] = [str(ROOT / "benchmarks")]
    from speed_memory import OtherLoad, run_meta, write_json

    load, wall = OtherLoad(), time.perf_counter()
    records = []
    for _ in range(args.reps):
        for condition in CONDITIONS:
            done = subprocess.run([sys.executable, __file__, "--child", condition, "--blocks",
                                   str(args.blocks)], capture_output=True, text=True, check=True)
            records += [json.loads(line) for line in done.stdout.splitlines()
                        if line.startswith("{")]
    summary = {}
    for condition in CONDITIONS:
        mine = [r for r in records if r["condition"] == condition]
        summary[condition] = {
            "median floor s": statistics.median(t for r in mine for t in r["floor"]),
            "median camlib s": statistics.median(t for r in mine for t in r["camlib"]),
            "median camlib / floor": statistics.median(r["ratio"] for r in mine),
            "blocks' camlib / floor": [round(r["ratio"], 4) for r in mine],
        }
    summary["floor: memory / default"] = (summary["memory"]["median floor s"]
                                          / summary["default"]["median floor s"])
    meta = run_meta(load, wall, blocks=args.blocks, reps=args.reps)
    print(json.dumps(summary, indent=2))
    write_json(args.json, {"meta": meta, "blocks": records, "summary": summary})
    return 0


if __name__ == "__main__":
    sys.exit(main())
