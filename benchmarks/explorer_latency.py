"""How long the live explorer takes to redraw after a control changes (chapter 2).

    python benchmarks/explorer_latency.py [--repeats 20] [--no-browser] [--json PATH]

1. In Python (no browser): the widget's controls driven as a reader would (class,
   opacity, box, layer), median wall time per update and the forward passes it caused;
   then one uncached Score-CAM at ``head`` (1280 channels) and Ablation-CAM at
   ``blocks.10``, the methods that rerun the network, in seconds. The explorer's help
   text quotes the Score-CAM figure from part 2 (``cambook.widgets.SCORECAM_HEAD_COST``;
   tests/book/test_widgets.py checks it against this file's JupyterLab "Score-CAM at
   head"). ``laptop_seconds`` (the seconds scaled by the reference workload timed around
   them) is kept for information: on a heavily shared machine it varied from run to run
   (10.7 and 15.9 s), so it is not used.
2. In JupyterLab (tests/browser/jupyterlab_harness.py, headless Chromium): chapter 2 run
   as a student runs it, then each control changed once, timed from the change to the
   new picture loaded in the page, Score-CAM at ``head`` included
   (tests/browser/test_jupyterlab.py drives the same steps, without that one).

Figures are in seconds or ms on this machine and in reference units (a ResNet-50 batch-8
CPU forward pass = 0.25 s, timed here first: ``x * 0.25 / reference``); the load average
before and after is kept, since other processes slow every figure. Writes
benchmarks/results/explorer-latency.json and .md (the table) unless --json says
otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks"), str(ROOT / "tests" / "browser")]

from build_time import REFERENCE_SECONDS, reference_workload  # noqa: E402

from camlib import models  # noqa: E402

from cambook import data, widgets  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "explorer-latency.json"
# The reference workload on the 2-core machine whose figures the explorer's text states,
# when quiet (benchmarks/results/build-time.json: 0.369 s). A slow method's seconds,
# scaled by the reference timed around it, give "laptop_seconds": its time there without
# other load.
LAPTOP_REFERENCE = 0.369


def python_latencies(repeats: int) -> dict:
    model = models.efficientnet_lite0()
    display, inputs = data.photo_batch()
    photos = {name: (display[i], inputs[i]) for i, name in enumerate(data.PHOTOS)}
    forwards = []
    model.register_forward_pre_hook(lambda *_: forwards.append(1))
    start = time.perf_counter()
    explorer = widgets.Explorer(
        model, photos, models.stage_layers(model), models.imagenet_classes()
    )
    rows = {
        "first view (one forward pass, every layer recorded)": {
            "ms": 1000 * (time.perf_counter() - start),
            "forward_passes": len(forwards),
        }
    }
    top = [value for _label, value in explorer.top_class.options]
    cases = {
        "CAM: change class (top-5)": lambda i: setattr(
            explorer.top_class, "value", top[i % len(top)]
        ),
        "CAM: change opacity": lambda i: setattr(
            explorer.opacity, "value", 0.3 + 0.4 * (i % 2)
        ),
        "CAM: toggle the Zhou box": lambda i: setattr(
            explorer.box, "value", i % 2 == 0
        ),
        "Grad-CAM: change layer (cached class)": lambda i: (
            setattr(explorer.method, "value", "gradcam"),
            setattr(explorer.layer, "value", ["blocks.10", "blocks.12"][i % 2]),
        ),
    }
    for name, change in cases.items():
        before, times = len(forwards), []
        for i in range(repeats):
            begin = time.perf_counter()
            change(i)
            times.append(1000 * (time.perf_counter() - begin))
        rows[name] = {
            "ms": statistics.median(times),
            "forward_passes": len(forwards) - before,
        }
        explorer.method.value, explorer.layer.value, explorer.box.value = (
            "cam",
            "head",
            False,
        )
    for name, layer, method in (
        ("Score-CAM at head (1280 channels)", "head", "scorecam"),
        ("Ablation-CAM at blocks.10", "blocks.10", "ablationcam"),
    ):
        explorer.layer.value = layer
        reference = reference_workload(3)
        before, begin, cpu = len(forwards), time.perf_counter(), time.process_time()
        explorer.method.value = method  # uncached: the full computation, once
        seconds, cpu = time.perf_counter() - begin, time.process_time() - cpu
        reference = (reference + reference_workload(3)) / 2  # the load during the run
        rows[name] = {
            "seconds": seconds,
            "cpu_seconds": cpu,
            "reference_seconds": reference,
            "laptop_seconds": seconds * LAPTOP_REFERENCE / reference,
            "forward_passes": len(forwards) - before,
        }
        explorer.method.value, explorer.layer.value = "cam", "head"
    return rows


def browser_latencies(screenshots: str | None) -> dict:
    import jupyterlab
    from jupyterlab_harness import drive, serve

    chapter = ROOT / "notebooks" / "02_principle.ipynb"
    reference = reference_workload(3)
    begin = time.perf_counter()
    with serve([chapter]) as lab:
        report = drive(
            lab,
            {
                "notebooks": ["notebooks/02_principle.ipynb"],
                "explore": "notebooks/02_principle.ipynb",
                "scorecamHead": True,
                "screenshots": screenshots,
            },
            timeout=1800,
        )
    explorer = report["explorer"] or {}
    if "steps" not in explorer:
        raise RuntimeError(
            f"the explorer was not driven: {explorer.get('failure', report)}"
        )
    reference = (reference + reference_workload(3)) / 2  # the load during this part
    return {
        "jupyterlab": jupyterlab.__version__,
        "reference_seconds": reference,
        "chapter_seconds": report["notebooks"][0]["seconds"],
        "wall_seconds": time.perf_counter() - begin,
        "steps": {step["name"]: step["ms"] for step in explorer["steps"]},
    }


def table(result: dict) -> str:
    scale = REFERENCE_SECONDS / result["reference_seconds"]
    lines = [
        f"**{result['date']}** · torch {result['torch']} · {result['cpus']} CPUs · "
        f"reference workload {result['reference_seconds']:.3f} s · load average "
        f"{result['load_before']:.1f} before, {result['load_after']:.1f} after",
        "",
        "| where | change | on this machine | reference units |",
        "|---|---|---:|---:|",
    ]
    for name, row in result["python"].items():
        value = row.get("ms", 1000 * row.get("seconds", 0))
        lines.append(f"| Python | {name} | {value:.0f} ms | {value * scale:.0f} ms |")
    browser = result.get("browser")
    if browser:
        scale = REFERENCE_SECONDS / browser.get(
            "reference_seconds", result["reference_seconds"]
        )
        for name, ms in browser["steps"].items():
            lines.append(
                f"| JupyterLab {browser['jupyterlab']} | {name} | {ms:.0f} ms | "
                f"{ms * scale:.0f} ms |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument(
        "--no-browser", action="store_true", help="skip the JupyterLab part"
    )
    parser.add_argument("--screenshots", help="a folder for the browser's screenshots")
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_before": os.getloadavg()[0],
        "reference_seconds": reference_workload(),
    }
    result["python"] = python_latencies(args.repeats)
    if not args.no_browser:
        result["browser"] = browser_latencies(args.screenshots)
    result["load_after"] = os.getloadavg()[0]
    result["load_average"] = [
        result["load_before"],
        result["load_after"],
    ]  # the table's
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    markdown = table(result)
    args.json.with_suffix(".md").write_text(markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
