"""Does Score-CAM's batch size explain its gap to the floor? Floor and camlib at two sizes.

    python benchmarks/scorecam_batch.py [--batches 8,32] [--rounds 4] [--size 224] [--json PATH]

``family_speed.py`` compared camlib's Score-CAM at its default batch size (32 until 2026-11-29)
with the floor at the sweep's best batch size (8 in its runs of 2026-11-28 15:55 and 2026-11-29
00:53), and ``timing_conditions.py`` found camlib at the floor's time when both run at 32. This
script times, in one process, the four contenders that separate the two effects: the floor
(1,024 masked forwards, ResNet-18, channels-last, random inputs of --size, 224 x 224 by default)
and camlib's Score-CAM of the 2 images at ``layer4``, each at both batch sizes, in ``--rounds``
rounds whose order rotates and reverses (round r runs the rotation by r // 2, reversed in odd
rounds: every contender's mean position is the same over each two rounds), after a discarded
first call of each (camlib's layout trial). glibc's default allocator, no memory sampling. It
reports each contender's median and, round by round, camlib / floor at the same batch size, each
floor / the first batch size's floor, and camlib at each size / the first size's floor. Nothing
is enforced: exits 0 unless the arguments are wrong.
"""
from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torchvision

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "benchmarks"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import camlib  # noqa: E402
from speed_memory import OtherLoad, run_meta, write_json  # noqa: E402


def contenders(batches: list[int], size: int = 224) -> dict:
    """The floor and camlib at each batch size, as argument-free calls."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        classes = model(x).argmax(1, keepdim=True)

    def floor(bs: int) -> None:
        masked = torch.randn(bs, 3, size, size).contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            for _ in range(0, 1024, bs):
                model(masked)

    def ours(bs: int) -> None:
        camlib.explain(model, x, method="scorecam", layers="layer4", classes=classes,
                       batch_size=bs)

    calls = {}
    for bs in batches:
        calls[f"floor {bs}"] = lambda bs=bs: floor(bs)
        calls[f"camlib {bs}"] = lambda bs=bs: ours(bs)
    return calls


def round_order(names: list[str], r: int) -> list[str]:
    """Round ``r``'s order (from 0): rotated by r // 2, reversed in odd rounds, so that every
    contender's mean position is the same over each two rounds."""
    shift = (r // 2) % len(names)
    order = names[shift:] + names[:shift]
    return order[::-1] if r % 2 else order


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", default="8,32")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    batches = [int(v) for v in args.batches.split(",")]
    if len(batches) < 2 or any(bs < 1 or 1024 % bs for bs in batches):
        parser.error(f"--batches: expected two or more divisors of 1024, got {args.batches}")
    load, wall = OtherLoad(), time.perf_counter()
    calls = contenders(batches, args.size)
    names = list(calls)
    for name in names:  # camlib's layout trial runs here and is remembered
        calls[name]()
    times = {name: [] for name in names}
    for r in range(args.rounds):
        for name in round_order(names, r):
            gc.collect()
            start = time.perf_counter()
            calls[name]()
            times[name].append(time.perf_counter() - start)
        print(json.dumps({name: round(t[-1], 3) for name, t in times.items()}), flush=True)
    first = f"floor {batches[0]}"
    per_round = {}

    def ratios(a: str, b: str) -> None:
        per_round[f"{a} / {b}"] = [s / t for s, t in zip(times[a], times[b])]

    for bs in batches:
        ratios(f"camlib {bs}", f"floor {bs}")
        if f"floor {bs}" != first:
            ratios(f"camlib {bs}", first)
            ratios(f"floor {bs}", first)
    summary = {"median s": {name: statistics.median(t) for name, t in times.items()},
               "median of the rounds' ratios": {k: statistics.median(v)
                                                for k, v in per_round.items()},
               "rounds' ratios": {k: [round(x, 4) for x in v] for k, v in per_round.items()}}
    meta = run_meta(load, wall, batches=batches, rounds=args.rounds, size=args.size,
                    threads=torch.get_num_threads())
    print(json.dumps(summary, indent=2))
    write_json(args.json, {"meta": meta, "times": times, "summary": summary})
    return 0


if __name__ == "__main__":
    sys.exit(main())
