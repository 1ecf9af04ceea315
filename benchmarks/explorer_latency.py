"""How long one explorer update takes after the first forward pass (target: <= 100 ms for CAM).

    python benchmarks/explorer_latency.py [--repeats 20]

Drives the widget's controls as a reader would (class, opacity, box, photo back and forth) and
reports the median wall time per update, with the count of forward passes it caused.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from camlib import models
from cambook import data, widgets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    model = models.efficientnet_lite0()
    display, inputs = data.photo_batch()
    photos = {name: (display[i], inputs[i]) for i, name in enumerate(data.PHOTOS)}
    forwards = []
    model.register_forward_pre_hook(lambda *_: forwards.append(1))
    start = time.perf_counter()
    explorer = widgets.Explorer(model, photos, models.stage_layers(model), models.imagenet_classes())
    print(f"first view (one forward pass, all {len(explorer.state.layers)} layers recorded): "
          f"{1000 * (time.perf_counter() - start):.0f} ms")
    top = [value for _label, value in explorer.top_class.options]

    def timed(change) -> float:
        begin = time.perf_counter()
        change()
        return 1000 * (time.perf_counter() - begin)

    cases = {
        "CAM: change class (top-5)": lambda i: setattr(explorer.top_class, "value", top[i % len(top)]),
        "CAM: change opacity": lambda i: setattr(explorer.opacity, "value", 0.3 + 0.4 * (i % 2)),
        "CAM: toggle the Zhou box": lambda i: setattr(explorer.box, "value", i % 2 == 0),
        "Grad-CAM: change layer (cached class)": lambda i: (setattr(explorer.method, "value", "gradcam"),
                                                             setattr(explorer.layer, "value", ["blocks.10", "blocks.12"][i % 2])),
    }
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; median of {args.repeats} updates")
    print("| update | median ms | forward passes |")
    print("|---|---:|---:|")
    for name, change in cases.items():
        before = len(forwards)
        times = [timed(lambda: change(i)) for i in range(args.repeats)]
        print(f"| {name} | {statistics.median(times):.1f} | {len(forwards) - before} |")
        explorer.method.value, explorer.layer.value, explorer.box.value = "cam", "head", False


if __name__ == "__main__":
    main()
