"""The CAM family beside pytorch-grad-cam, torchcam and Captum: time and peak memory.

    python benchmarks/family_speed.py [--model resnet18] [--batch 2] [--size 224] [--rounds 3]
        [--repeats 5] [--threads N] [--device cpu|cuda] [--json PATH] [--quick]

One process, one model (torchvision's, random seeded weights, eval mode; ``--quick``: a tiny
network of the same shape, for smoke tests), its ``layer4``, the
top-1 class of each image (found once beforehand). Contenders: a plain forward pass (no_grad);
every camlib method; camlib's Ablation-CAM with the network's tail rerun on every ablated
copy, the path it takes at layers that feed no GAP + linear head (at ``layer4`` it picks the
closed form by itself, so here the head is made unfindable); and each peer's version of a
method camlib has, at its documented defaults: pytorch-grad-cam (pgc) on ``layer4[-1]``,
torchcam, Captum's LayerGradCam. Each pgc and torchcam extractor has its own copy of the
model, since they keep hooks on it.

Timing: ``--rounds`` rounds. Each round calls the Score-CAMs and pgc's Ablation-CAM once and
every other contender ``--repeats`` times (keeping the median), in an order that rotates
from round to round; the two groups swap places in alternate rounds. Ratios are taken within
each round and reported as the median of the rounds; other processes' CPU share is recorded
per round. Peak memory comes after all timing: one call per contender, with glibc's mmap
threshold fixed (see ``common.Glibc``). Targets are reported, never enforced: exits 0.
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

import torch
import torch.nn.functional as F
import torchvision

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).parent)]
import camlib  # noqa: E402
from common import (MIB, Glibc, OtherLoad, device_name, peak_bytes, run_meta,  # noqa: E402
                    sync, tiny, write_json)

PEERS = {  # camlib's method: (pgc's class, torchcam's class); Captum has Grad-CAM only
    "cam": (None, "CAM"), "gradcam": ("GradCAM", "GradCAM"),
    "gradcampp": ("GradCAMPlusPlus", "GradCAMpp"), "xgradcam": ("XGradCAM", "XGradCAM"),
    "layercam": ("LayerCAM", "LayerCAM"), "hirescam": ("HiResCAM", None),
    "eigencam": ("EigenCAM", None), "ablationcam": ("AblationCAM", None),
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
    release: object = lambda: None  # drops what a library keeps between calls (untimed)
    output: object = None  # the last timed call's


def tail_reruns(model, x, classes):
    """camlib's Ablation-CAM with no GAP + linear head found: the tail runs per ablation."""
    module = importlib.import_module("camlib.explain")
    original = module.find_linear_head

    def no_head(*args):
        raise ValueError("no head, for the benchmark")

    module.find_linear_head = no_head
    try:
        return camlib.explain(model, x, method="ablationcam", layers="layer4", classes=classes)
    finally:
        module.find_linear_head = original


def pgc_release(cam, net) -> None:
    """pgc keeps the last output (with its graph), the hooked tensors and the .grad's."""
    cam.outputs = None
    cam.activations_and_grads.activations, cam.activations_and_grads.gradients = [], []
    net.zero_grad(set_to_none=True)


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
        found.append(Contender(f"camlib {method}", method, "camlib", partial(
            camlib.explain, model, x, method=method, layers="layer4", classes=top1)))
    found.append(Contender(TAIL, "ablationcam", "camlib", partial(tail_reruns, model, x, top1)))
    targets = [ClassifierOutputTarget(int(c)) for c in top1]
    for method, (pgc_name, tc_name) in PEERS.items():
        if pgc_name:
            net = copy.deepcopy(model)
            cam = getattr(pgc, pgc_name)(model=net, target_layers=[net.layer4[-1]])
            found.append(Contender(f"pgc {pgc_name}", method, "grad-cam", partial(
                cam, input_tensor=x, targets=targets), partial(pgc_release, cam, net)))
        if tc_name:
            net = copy.deepcopy(model)
            extra = {"fc_layer": "fc"} if tc_name == "CAM" else {}
            extractor = getattr(tc, tc_name)(net, target_layer="layer4",
                                             input_shape=tuple(x.shape[1:]), **extra)
            grad = tc_name not in ("CAM", "ScoreCAM")
            found.append(Contender(f"torchcam {tc_name}", method, "torchcam", partial(
                torchcam_call, extractor, net, x, top1.tolist(), grad), extractor.reset_hooks))
    captum = LayerGradCam(model, model.layer4)
    found.append(Contender("Captum LayerGradCam", "gradcam", "captum", partial(
        captum.attribute, x, target=top1, relu_attributions=True)))
    return found


def timed(c: Contender, device) -> float:
    sync(device)
    start = time.perf_counter()
    c.output = c.call()
    sync(device)
    seconds = time.perf_counter() - start
    c.release()
    return seconds


def rotate(items: list, k: int) -> list:
    return items[k % len(items):] + items[: k % len(items)]


def time_rounds(all_: list[Contender], device, rounds: int, repeats: int):
    """Each contender's seconds per round (the quick ones: median of ``repeats`` calls) and
    other processes' CPU share per round."""
    quick = [c for c in all_ if c.name not in SLOW]
    slow = [c for c in all_ if c.name in SLOW]
    times = {c.name: [] for c in all_}
    loads = []
    for r in range(rounds):
        load, calls = OtherLoad(), {c.name: [] for c in quick}

        def run_quick():
            for j in range(repeats):
                for c in rotate(quick, r * repeats + j):
                    calls[c.name].append(timed(c, device))

        def run_slow():
            for c in rotate(slow, r):
                times[c.name].append(timed(c, device))

        for block in (run_quick, run_slow) if r % 2 == 0 else (run_slow, run_quick):
            block()
        for name, seconds in calls.items():
            times[name].append(statistics.median(seconds))
        loads.append(load.share())
        print(f"  round {r + 1}: other processes used {loads[-1]:.0%} of the CPU", flush=True)
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
        maps = F.interpolate(maps[:, None], size, mode="bilinear", align_corners=False)[:, 0]
    return maps


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    """The lowest over the images of the correlation of a's and b's maps."""
    a, b = a.flatten(1).double(), b.flatten(1).double()
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return float(((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))).min())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=["resnet18", "resnet50", "tiny"], default="resnet18")
    parser.add_argument("--threads", type=int, default=None, help="torch's CPU threads")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=None, help="default 3 (--quick: 1)")
    parser.add_argument("--repeats", type=int, default=None, help="default 5 (--quick: 1)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny net, 2 x 32 x 32, 1 thread")
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
    device, wall, load, glibc = torch.device(args.device), time.perf_counter(), OtherLoad(), Glibc()
    torch.manual_seed(0)
    build = tiny if args.model == "tiny" else getattr(torchvision.models, args.model)
    model = (build() if args.model == "tiny" else build(weights=None)).eval().to(device)
    x = torch.randn(args.batch, 3, args.size, args.size,
                    generator=torch.Generator().manual_seed(0)).to(device)
    with torch.no_grad():
        top1 = model(x).argmax(1)
    everyone = contenders(model, x, top1)
    print(f"{len(everyone)} contenders; a warm-up call of each quick one", flush=True)
    for c in everyone:
        if c.name not in SLOW:  # the slow ones' first call costs little more than others
            c.call()
            c.release()
    times, loads = time_rounds(everyone, device, rounds, repeats)
    print("peak memory, one call each", flush=True)
    glibc_fixed = device.type == "cpu" and glibc.fix_mmap_threshold()
    peaks = {}
    for c in everyone:
        peaks[c.name] = peak_bytes(c.call, device, glibc)
        c.release()

    size, rows, maps = x.shape[-2:], {}, {c.name: c.output for c in everyone}
    for c in everyone:
        row = rows[c.name] = {
            "method": c.name, "family": c.method, "library": c.library,
            "seconds": statistics.median(times[c.name]), "rounds": times[c.name],
            "seconds_per_image": statistics.median(times[c.name]) / args.batch,
            "peak_mib": peaks[c.name] / MIB, "x_plain_time": ratio(times[c.name], times[PLAIN])}
        if c.library not in ("torch", "camlib") or c.name == TAIL:
            ours = f"camlib {c.method}"
            row["x_camlib_time"] = ratio(times[c.name], times[ours])
            row["x_camlib_memory"] = peaks[c.name] / max(peaks[ours], 1.0)
            row["r_with_camlib"] = pearson(as_maps(maps[c.name], size), as_maps(maps[ours], size))
    faster_peer = [min(t) for t in zip(times["pgc ScoreCAM"], times["torchcam ScoreCAM"])]
    summary = dict(zip([key for key, _, _ in TARGETS], [
        max(rows[f"camlib {m}"]["x_plain_time"] for m in GRADIENT),
        ratio(times["pgc AblationCAM"], times["camlib ablationcam"]),
        ratio(times["camlib scorecam"], faster_peer),
        peaks["camlib scorecam"] / max(peaks["pgc ScoreCAM"], 1.0)]))
    summary["Ablation-CAM: pgc's time / camlib's with tail reruns"] = ratio(
        times["pgc AblationCAM"], times[TAIL])
    targets = [{"target": f"{key} {op} {limit:g}", "value": summary[key], "limit": limit,
                "passed": summary[key] <= limit if op == "<=" else summary[key] >= limit}
               for key, op, limit in TARGETS]
    meta = run_meta(
        load, wall, device=device.type, device_name=device_name(device),
        threads=torch.get_num_threads(), model=f"{args.model}, random weights (torch.manual_seed(0))"
        ", eval, layer4, top-1 classes", batch=args.batch, size=args.size,
        rounds=rounds, repeats=repeats, other_processes_cpu_share_per_round=loads,
        glibc_mmap_threshold_fixed_for_memory=glibc_fixed)
    print("\n| contender | s / image | x plain forward | x camlib | peak MiB | r with camlib |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in rows.values():
        extra = [f"{row[k]:.3g}" if k in row else "" for k in ("x_camlib_time", "r_with_camlib")]
        print(f"| {row['method']} | {row['seconds_per_image']:.4f} | {row['x_plain_time']:.2f}"
              f" | {extra[0]} | {row['peak_mib']:.0f} | {extra[1]} |")
    for t in targets:
        print(f"- {'PASS' if t['passed'] else 'FAIL'}: {t['target']} (measured {t['value']:.3g})")
    print(f"- other processes used {meta['other_processes_cpu_share']:.0%} of the CPU; "
          f"{meta['total_seconds']:.0f} s in all; always exits 0")
    write_json(args.json, {"meta": meta, "results": list(rows.values()), "summary": summary,
                           "targets": targets})
    return 0


if __name__ == "__main__":
    sys.exit(main())
