"""Cost of Chapter 4's experiment per seed, scaled to the reference machine (target: <=
20 s).

    python benchmarks/enhance_cost.py [--seeds 0 1] [--threads 2] [--device cpu]

The reference workload is a ResNet-50 from torchvision with random weights, batch 8, 224
x 224, eval mode, no gradients: the median of 5 forwards, measured in this process
before and after each seed. The reference machine runs it in 0.25 s, so the scaled
figure is ``seconds_per_seed / reference_seconds * 0.25``. Other load on the machine
moves both numbers, the ratio less.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchvision

from cambook import enhance

REFERENCE_SECONDS = 0.25


def reference(runs: int = 5) -> float:
    torch.manual_seed(0)
    net = torchvision.models.resnet50(weights=None).eval()
    images = torch.randn(8, 3, 224, 224)
    times = []
    with torch.no_grad():
        net(images)
        for _ in range(runs):
            start = time.perf_counter()
            net(images)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    before = reference()
    for seed in args.seeds:
        run = enhance.run_experiment(enhance.Config(seed=seed, device=args.device))
        after = reference()
        scale = REFERENCE_SECONDS / ((before + after) / 2)
        parts = ", ".join(
            f"{name} {seconds * scale:.1f}" for name, seconds in run.seconds.items()
        )
        print(
            f"seed {seed}: {run.seconds['total']:.1f} s here, reference "
            f"{before:.3f}/{after:.3f} s, "
            f"scaled {run.seconds['total'] * scale:.1f} s ({parts})"
        )
        before = after


if __name__ == "__main__":
    main()
