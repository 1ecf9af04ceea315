"""The CAM family beside pytorch-grad-cam, torchcam and Captum: time and peak memory.

    python benchmarks/family_speed.py [--model resnet18] [--batch 2] [--size 224]
        [--rounds 3] [--repeats 5] [--threads N] [--device cpu|cuda] [--json PATH]
        [--quick]

One process: a model with random seeded weights (``--quick``: a tiny one), ``layer4``,
each image's top-1 class; a plain forward pass, every camlib method, camlib's
Ablation-CAM with a tail pass per channel (its path where no GAP + linear head follows:
the head is made unfindable), and the peers' versions at their documented defaults, each
extractor on its own copy of the model. A round calls the Score-CAMs and pgc's
Ablation-CAM once, the others ``--repeats`` times (median), in an order that rotates;
ratios are taken within a round, and their median over the rounds is reported. Peak
memory: after all timing, one call each. Targets are reported, never enforced (exit 0).
More in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import statistics
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from unittest import mock

import torch
import torch.nn.functional as F
import torchvision

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).parent)]
import camlib  # noqa: E402
from common import (
    MIB,
    Glibc,
    OtherLoad,
    device_name,
    peak_bytes,  # noqa: E402
    run_meta,
    sync,
    tiny,
    write_json,
)

PEERS = {  # camlib's method: (pgc's class, torchcam's); Captum has Grad-CAM only
    "cam": (None, "CAM"),
    "gradcam": ("GradCAM", "GradCAM"),
    "gradcampp": ("GradCAMPlusPlus", "GradCAMpp"),
    "xgradcam": ("XGradCAM", "XGradCAM"),
    "layercam": ("LayerCAM", "LayerCAM"),
    "hirescam": ("HiResCAM", None),
    "eigencam": ("EigenCAM", None),
    "ablationcam": ("AblationCAM", None),
    "scorecam": ("ScoreCAM", "ScoreCAM"),
}
GRADIENT = ["gradcam", "gradcampp", "xgradcam", "layercam", "hirescam"]
SLOW = ("camlib scorecam", "pgc ScoreCAM", "torchcam ScoreCAM", "pgc AblationCAM")
PLAIN, TAIL = "plain forward", "camlib ablationcam, tail reruns"
TARGETS = [  # (summary key, "<=" or ">=", limit)
    ("camlib gradient methods, worst time / plain forward's", "<=", 1.2),
    ("Ablation-CAM: pgc's time / camlib's", ">=", 50.0),
    ("Score-CAM: camlib's time / the faster peer's", "<=", 1.0),
    ("Score-CAM: camlib's peak memory / pgc's", "<=", 0.5),
]


@dataclass
class Contender:
    name: str
    method: str  # camlib's name of the method ("" for the plain forward)
    library: str
    call: object
    output: object = None  # the last timed call's


def tail_reruns(model, x, classes):
    """camlib's Ablation-CAM where no GAP + linear head is found: tail reruns."""
    explain = importlib.import_module("camlib.explain")
    with mock.patch.object(explain, "find_linear_head", side_effect=ValueError("none")):
        return camlib.explain(
            model, x, method="ablationcam", layers="layer4", classes=classes
        )


def torchcam_call(extractor, net, x, classes, grad: bool):
    with torch.set_grad_enabled(grad):
        scores = net(x)
    return extractor(class_idx=classes, scores=scores)[0]


def contenders(model, x, top1) -> list[Contender]:
    import pytorch_grad_cam as pgc
    import torchcam.methods as tc
    from captum.attr import LayerGradCam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    def plain():
        with torch.no_grad():
            return model(x)

    found = [Contender(PLAIN, "", "torch", plain)]
    for method in PEERS:
        found.append(
            Contender(
                f"camlib {method}",
                method,
                "camlib",
                partial(
                    camlib.explain,
                    model,
                    x,
                    method=method,
                    layers="layer4",
                    classes=top1,
                ),
            )
        )
    found.append(
        Contender(TAIL, "ablationcam", "camlib", partial(tail_reruns, model, x, top1))
    )
    targets = [ClassifierOutputTarget(int(c)) for c in top1]
    for method, (pgc_name, tc_name) in PEERS.items():
        if pgc_name:
            net = copy.deepcopy(model)
            cam = getattr(pgc, pgc_name)(model=net, target_layers=[net.layer4[-1]])
            found.append(
                Contender(
                    f"pgc {pgc_name}",
                    method,
                    "grad-cam",
                    partial(cam, input_tensor=x, targets=targets),
                )
            )
        if tc_name:
            net = copy.deepcopy(model)
            extra = {"fc_layer": "fc"} if tc_name == "CAM" else {}
            extractor = getattr(tc, tc_name)(
                net, target_layer="layer4", input_shape=tuple(x.shape[1:]), **extra
            )
            grad = tc_name not in ("CAM", "ScoreCAM")
            call = partial(torchcam_call, extractor, net, x, top1.tolist(), grad)
            found.append(Contender(f"torchcam {tc_name}", method, "torchcam", call))
    captum = LayerGradCam(model, model.layer4)
    found.append(
        Contender(
            "Captum LayerGradCam",
            "gradcam",
            "captum",
            partial(captum.attribute, x, target=top1, relu_attributions=True),
        )
    )
    return found


def timed(c: Contender, device) -> float:
    sync(device)
    start = time.perf_counter()
    c.output = c.call()
    sync(device)
    return time.perf_counter() - start


def rotate(items: list, k: int) -> list:
    return items[k % len(items) :] + items[: k % len(items)]


def time_rounds(everyone: list[Contender], device, rounds: int, repeats: int):
    """Each contender's seconds per round (the quick ones: the median of ``repeats``
    calls) and other processes' CPU share per round."""
    quick = [c for c in everyone if c.name not in SLOW]
    slow = [c for c in everyone if c.name in SLOW]
    times, loads = {c.name: [] for c in everyone}, []
    for r in range(rounds):
        load, calls = OtherLoad(), {c.name: [] for c in everyone}
        blocks = [
            [c for j in range(repeats) for c in rotate(quick, r * repeats + j)],
            rotate(slow, r),
        ]
        for c in sum(blocks[:: 1 if r % 2 == 0 else -1], []):  # swapped in odd rounds
            calls[c.name].append(timed(c, device))
        for name, seconds in calls.items():
            times[name].append(statistics.median(seconds))
        loads.append(load.share())
        print(
            f"round {r + 1}: other processes used {loads[-1]:.0%} of the CPU",
            flush=True,
        )
    return times, loads


def ratio(a: list[float], b: list[float]) -> float:
    """Median over the rounds of a's time / b's time in the same round."""
    return statistics.median(x / y for x, y in zip(a, b))


def as_maps(output, size) -> torch.Tensor:
    """Any contender's maps as [B, H, W] at the input's size, on the CPU."""
    maps = output.maps[:, 0] if isinstance(output, camlib.Explanation) else output
    maps = torch.as_tensor(maps).detach().float().cpu()
    maps = maps[:, 0] if maps.dim() == 4 else maps
    if tuple(maps.shape[-2:]) != tuple(size):
        maps = F.interpolate(maps[:, None], size, mode="bilinear")[:, 0]
    return maps


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    """The lowest over the images of the correlation of a's and b's maps."""
    a, b = a.flatten(1).double(), b.flatten(1).double()
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return float(((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))).min())


def report(everyone: list[Contender], times: dict, peaks: dict, batch: int, size):
    """The rows (one per contender), the summary's ratios and the targets."""
    rows = {}
    for c in everyone:
        seconds = statistics.median(times[c.name])
        row = rows[c.name] = {
            "method": c.name,
            "family": c.method,
            "library": c.library,
            "seconds": seconds,
            "seconds_per_image": seconds / batch,
            "rounds": times[c.name],
            "peak_mib": peaks[c.name] / MIB,
            "x_plain_time": ratio(times[c.name], times[PLAIN]),
        }
        if c.library not in ("torch", "camlib") or c.name == TAIL:
            ours = next(o for o in everyone if o.name == f"camlib {c.method}")
            row["x_camlib_time"] = ratio(times[c.name], times[ours.name])
            row["x_camlib_memory"] = peaks[c.name] / max(peaks[ours.name], 1.0)
            row["r_with_camlib"] = pearson(
                as_maps(c.output, size), as_maps(ours.output, size)
            )
    faster = [min(t) for t in zip(times["pgc ScoreCAM"], times["torchcam ScoreCAM"])]
    values = [
        max(rows[f"camlib {m}"]["x_plain_time"] for m in GRADIENT),
        ratio(times["pgc AblationCAM"], times["camlib ablationcam"]),
        ratio(times["camlib scorecam"], faster),
        peaks["camlib scorecam"] / max(peaks["pgc ScoreCAM"], 1.0),
    ]
    summary = {key: value for (key, _, _), value in zip(TARGETS, values)}
    summary["Ablation-CAM: pgc's time / camlib's with tail reruns"] = ratio(
        times["pgc AblationCAM"], times[TAIL]
    )
    targets = [
        {
            "target": f"{key} {op} {limit:g}",
            "value": summary[key],
            "limit": limit,
            "passed": (summary[key] <= limit if op == "<=" else summary[key] >= limit),
        }
        for key, op, limit in TARGETS
    ]
    return list(rows.values()), summary, targets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=["resnet18", "resnet50"], default="resnet18")
    parser.add_argument("--threads", type=int, default=None, help="torch's CPU threads")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=None, help="3 (--quick: 1)")
    parser.add_argument("--repeats", type=int, default=None, help="5 (--quick: 1)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: tiny net, 2 images of 32 x 32, 1 thread",
    )
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available")
    if args.quick:
        args.model, args.batch, args.size = "tiny", 2, 32
        args.threads = args.threads or 1
    if args.threads:
        torch.set_num_threads(args.threads)
    rounds = args.rounds or (1 if args.quick else 3)
    repeats = args.repeats or (1 if args.quick else 5)
    device, wall, load = torch.device(args.device), time.perf_counter(), OtherLoad()
    torch.manual_seed(0)
    model = tiny() if args.quick else getattr(torchvision.models, args.model)()
    model = model.eval().to(device)
    x = torch.randn(
        args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(0)
    ).to(device)
    with torch.no_grad():
        top1 = model(x).argmax(1)
    everyone = contenders(model, x, top1)
    print(f"{len(everyone)} contenders; a warm-up call of each quick one", flush=True)
    for c in everyone:
        if c.name not in SLOW:  # a slow one's first call costs little more than later
            c.call()
    times, loads = time_rounds(everyone, device, rounds, repeats)
    print("peak memory, one call each", flush=True)
    glibc = Glibc()
    glibc_fixed = device.type == "cpu" and glibc.fix_mmap_threshold()
    peaks = {}
    for c in everyone:
        peaks[c.name] = peak_bytes(c.call, device, glibc)
    rows, summary, targets = report(everyone, times, peaks, args.batch, x.shape[-2:])
    meta = run_meta(
        load,
        wall,
        device=device.type,
        device_name=device_name(device),
        threads=torch.get_num_threads(),
        batch=args.batch,
        size=args.size,
        model=f"{model.__class__.__name__} ({'tiny' if args.quick else args.model})"
        ", random weights (torch.manual_seed(0)), eval, layer4, top-1 classes",
        rounds=rounds,
        repeats=repeats,
        other_processes_cpu_share_per_round=loads,
        glibc_mmap_threshold_fixed_for_memory=glibc_fixed,
    )
    for row in rows:
        versus = {
            k: round(row[k], 4) for k in ("x_camlib_time", "r_with_camlib") if k in row
        }
        print(
            f"{row['method']}: {row['seconds_per_image']:.4f} s per image, x"
            f"{row['x_plain_time']:.2f} plain, {row['peak_mib']:.0f} MiB",
            versus or "",
        )
    for t in targets:
        verdict = "PASS" if t["passed"] else "FAIL"
        print(f"{verdict}: {t['target']} (measured {t['value']:.3g})")
    print(
        f"other processes used {meta['other_processes_cpu_share']:.0%} of the CPU; "
        f"{meta['total_seconds']:.0f} s in all; always exits 0"
    )
    write_json(
        args.json,
        {"meta": meta, "results": rows, "summary": summary, "targets": targets},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
