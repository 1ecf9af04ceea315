"""Grad-CAM's cost on ResNet-50 beside a plain forward pass and the other CAM libraries.

    python benchmarks/speed_memory.py [--device cpu|cuda] [--batch 8] [--size 224]
                                      [--repeats N] [--json PATH] [--quick]

Every contender makes maps of the top-1 class of every image of one batch, for ResNet-50
(torchvision, random seeded weights, eval mode; ``--quick``: a tiny network of the same
shape) at its ``layer4``. The classes are found once by a plain forward pass beforehand
and handed to each contender. All contenders run in one process, interleaved: each
timing round calls every contender once, starting at a different one each round, so
drift (thermal, other load) is shared.

Speed is the median wall time of one call. Peak memory, measured after all timing, is
the most memory a call needs on top of what was allocated before it (model, input): on
CUDA from the caching allocator's peak counter, on the CPU from the resident set size
sampled by a thread (``common.peak_bytes``). The targets are reported, never enforced:
exits 0.
"""

from __future__ import annotations

import argparse
import copy
import datetime as _dt
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

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
    peak_bytes,
    sync,
    tiny,  # noqa: E402
    versions,
)

PLAIN = "plain forward (no_grad)"


# --------------------------------------------------------------------------------------
# Contenders


@dataclass
class Contender:
    """One way of computing maps: ``call()`` does the work a user would time;
    ``cleanup()`` drops whatever the library keeps between calls (graphs, hooked
    tensors, parameter gradients) so that the next contender starts from the same memory
    state. ``cleanup`` is never timed."""

    name: str
    call: Callable[[], object]
    cleanup: Callable[[], None] = lambda: None
    library: str = ""
    times_s: list[float] = field(default_factory=list)
    peaks_bytes: list[float] = field(default_factory=list)


def to_maps(output: object) -> torch.Tensor:
    """A contender's output as a float tensor of maps [B, H, W] (first class), for the
    sanity check."""
    if isinstance(output, camlib.Explanation):
        return output.maps[:, 0]
    if isinstance(output, torch.Tensor):
        return (
            output.reshape(output.shape[0], *output.shape[-2:])
            if output.ndim == 4
            else output
        )
    return torch.as_tensor(output)


def min_max(maps: torch.Tensor) -> torch.Tensor:
    low = maps.amin(dim=(-2, -1), keepdim=True)
    spread = maps.amax(dim=(-2, -1), keepdim=True) - low
    return (maps - low) / spread.clamp_min(1e-12)


def build_contenders(
    model: torch.nn.Module, x: torch.Tensor, top1: torch.Tensor, top3: torch.Tensor
) -> list[Contender]:
    size = tuple(x.shape[-2:])
    top1_list = top1.tolist()
    contenders: list[Contender] = []

    # (1) The baseline: what the classifier costs on its own.
    def plain() -> torch.Tensor:
        with torch.no_grad():
            return model(x)

    contenders.append(Contender(PLAIN, plain, library="torch"))

    # (2)-(4) camlib, one-shot calls (hooks attached and removed inside each call).
    contenders.append(
        Contender(
            "camlib CAM",
            lambda: camlib.explain(
                model, x, method="cam", layers="layer4", classes=top1
            ),
            library="camlib",
        )
    )
    contenders.append(
        Contender(
            "camlib Grad-CAM",
            lambda: camlib.explain(
                model, x, method="gradcam", layers="layer4", classes=top1
            ),
            library="camlib",
        )
    )
    contenders.append(
        Contender(
            "camlib Grad-CAM top-3",
            lambda: camlib.explain(
                model, x, method="gradcam", layers="layer4", classes=top3
            ),
            library="camlib",
        )
    )

    # The other libraries keep forward hooks on the model for as long as their extractor
    # lives; each gets its own copy of the model (same weights) so that its hooks never
    # fire (or hold
    # tensors) while another contender runs.

    # (5) pytorch-grad-cam: built once, as a user would; it returns numpy maps at input
    # size.
    from pytorch_grad_cam import GradCAM as PgcGradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    pgc_model = copy.deepcopy(model)
    pgc = PgcGradCAM(model=pgc_model, target_layers=[pgc_model.layer4[-1]])
    pgc_targets = [ClassifierOutputTarget(c) for c in top1_list]

    def pgc_cleanup() -> None:
        # It keeps the last output (and with it the retained autograd graph of the whole
        # network), the hooked activations and gradients, and the parameters' .grad.
        pgc.outputs = None
        pgc.activations_and_grads.activations = []
        pgc.activations_and_grads.gradients = []
        pgc_model.zero_grad(set_to_none=True)

    contenders.append(
        Contender(
            "pytorch-grad-cam GradCAM",
            lambda: pgc(input_tensor=x, targets=pgc_targets),
            pgc_cleanup,
            library="grad-cam",
        )
    )

    # (6) torchcam Grad-CAM: forward with grad enabled, then the extractor
    # backpropagates from the scores to the hooked layer4 output. It returns normalised
    # maps at layer4 resolution; they are upsampled to input size here, as camlib's and
    # pytorch-grad-cam's are.
    from torchcam.methods import CAM as TcCAM
    from torchcam.methods import GradCAM as TcGradCAM

    tc_grad_model = copy.deepcopy(model)
    tc_grad = TcGradCAM(
        tc_grad_model, target_layer="layer4", input_shape=tuple(x.shape[1:])
    )

    def torchcam_gradcam() -> torch.Tensor:
        with torch.enable_grad():
            scores = tc_grad_model(x)
            cams = tc_grad(class_idx=top1_list, scores=scores)
        return F.interpolate(
            cams[0].unsqueeze(1), size=size, mode="bilinear", align_corners=False
        )

    contenders.append(
        Contender(
            "torchcam GradCAM",
            torchcam_gradcam,
            tc_grad.reset_hooks,
            library="torchcam",
        )
    )

    # (7) torchcam CAM: forward without grad, then the fc weights of the classes.
    tc_cam_model = copy.deepcopy(model)
    tc_cam = TcCAM(
        tc_cam_model,
        target_layer="layer4",
        fc_layer="fc",
        input_shape=tuple(x.shape[1:]),
    )

    def torchcam_cam() -> torch.Tensor:
        with torch.no_grad():
            tc_cam_model(x)
            cams = tc_cam(class_idx=top1_list)
        return F.interpolate(
            cams[0].unsqueeze(1), size=size, mode="bilinear", align_corners=False
        )

    contenders.append(
        Contender("torchcam CAM", torchcam_cam, tc_cam.reset_hooks, library="torchcam")
    )

    # (8) Captum LayerGradCam (hooks only during attribute(), so it can share the
    # model); ReLU'd as in the paper and upsampled bilinearly to input size; Captum does
    # not normalise.
    from captum.attr import LayerAttribution, LayerGradCam

    captum_gc = LayerGradCam(model, model.layer4)

    def captum_gradcam() -> torch.Tensor:
        attributions = captum_gc.attribute(x, target=top1, relu_attributions=True)
        return LayerAttribution.interpolate(
            attributions, size, interpolate_mode="bilinear"
        )

    contenders.append(
        Contender("Captum LayerGradCam", captum_gradcam, library="captum")
    )
    return contenders


# --------------------------------------------------------------------------------------
# Measurement


def time_call(contender: Contender, device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    result = contender.call()
    sync(device)
    elapsed = time.perf_counter() - start
    del result
    contender.cleanup()
    return elapsed


def measure_peak(contender: Contender, device: torch.device, glibc: Glibc) -> float:
    """Peak memory of one call above what was in use just before it, in bytes."""
    peak = peak_bytes(contender.call, device, glibc)
    contender.cleanup()
    return peak


# --------------------------------------------------------------------------------------
# Reporting


def check_targets(rows: dict[str, dict]) -> list[dict]:
    cam, gradcam, pgc = (
        rows["camlib CAM"],
        rows["camlib Grad-CAM"],
        rows["pytorch-grad-cam GradCAM"],
    )
    speedup = pgc["median_ms"] / gradcam["median_ms"]
    return [
        {
            "target": "camlib CAM time <= 1.05x plain forward",
            "value": cam["x_plain_time"],
            "limit": 1.05,
            "passed": cam["x_plain_time"] <= 1.05,
        },
        {
            "target": "camlib Grad-CAM time <= 1.2x plain forward",
            "value": gradcam["x_plain_time"],
            "limit": 1.2,
            "passed": gradcam["x_plain_time"] <= 1.2,
        },
        {
            "target": "camlib Grad-CAM >= 2x faster than pytorch-grad-cam GradCAM",
            "value": speedup,
            "limit": 2.0,
            "passed": speedup >= 2.0,
        },
        {
            "target": "camlib Grad-CAM peak memory <= 1.3x plain forward's",
            "value": gradcam["x_plain_memory"],
            "limit": 1.3,
            "passed": gradcam["x_plain_memory"] <= 1.3,
        },
    ]


def markdown(
    meta: dict, rows: list[dict], targets: list[dict], agreement: dict[str, float]
) -> str:
    lines = [
        f"**{meta['date']}** · torch {meta['versions']['torch']} · "
        f"{meta['device_name']} · "
        f"{meta['threads']} threads · batch {meta['batch']} · size "
        f"{meta['size']}x{meta['size']} · "
        f"ResNet-50 (random weights), layer4 · {meta['repeats']} interleaved rounds",
        "",
        "| method | median ms | x plain forward | peak MiB | x plain forward memory |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['method']} | {row['median_ms']:.1f} | {row['x_plain_time']:.2f} | "
            f"{row['peak_mib']:.1f} | {row['x_plain_memory']:.2f} |"
        )
    lines += ["", f"Memory: {meta['memory_method']}", ""]
    share = meta.get("other_processes_cpu_share_during_timing")
    if share is not None:
        warning = (
            " -- WARNING: the machine was busy, timings are unreliable; rerun "
            "when it is idle"
            if share > 0.05
            else ""
        )
        lines += [
            f"Other processes used {100 * share:.1f}% of the machine's CPU "
            f"time during the timing rounds{warning}.",
            "",
        ]
    lines.append(
        "Agreement of top-1 maps with camlib Grad-CAM (min-max scaled, mean "
        "|difference|): "
        + ", ".join(f"{name} {value:.3g}" for name, value in agreement.items())
    )
    lines.append("")
    for target in targets:
        verdict = "PASS" if target["passed"] else "FAIL"
        lines.append(
            f"- {verdict}: {target['target']} (measured "
            f"{target['value']:.2f}, limit {target['limit']})"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timing rounds (default 15 on CPU, 50 on CUDA)",
    )
    parser.add_argument(
        "--warmup", type=int, default=None, help="untimed rounds first (default 2)"
    )
    parser.add_argument(
        "--memory-repeats",
        type=int,
        default=None,
        help="memory calls per contender (default 5)",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help="also write the numbers and metadata here",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: a tiny net, batch 2, 32 x 32, 2 rounds, 1 thread",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.size = 2, 32
        torch.set_num_threads(1)
        args.repeats = args.repeats or 2
        args.warmup = 1 if args.warmup is None else args.warmup
        args.memory_repeats = args.memory_repeats or 1
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available")
    device = torch.device(args.device)
    repeats = args.repeats or (50 if device.type == "cuda" else 15)
    warmup = 2 if args.warmup is None else args.warmup
    memory_repeats = args.memory_repeats or 5
    wall_start = time.perf_counter()

    torch.manual_seed(0)
    model = tiny() if args.quick else torchvision.models.resnet50(weights=None)
    model = model.eval().to(device)
    x = torch.randn(
        args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(0)
    ).to(device)
    with torch.no_grad():
        logits = model(x)
    top3 = logits.topk(3, dim=1).indices
    top1 = top3[:, 0].contiguous()
    del logits

    contenders = build_contenders(model, x, top1, top3)
    names = [c.name for c in contenders]

    # Sanity: every contender makes [B, H, W] maps of the top-1 classes, and they agree.
    outputs = {c.name: c.call() for c in contenders}
    for c in contenders:
        c.cleanup()
    reference = min_max(to_maps(outputs["camlib Grad-CAM"]).float().cpu())
    agreement = {}
    for c in contenders[1:]:
        maps = to_maps(outputs[c.name]).detach().float().cpu()
        if tuple(maps.shape) != (args.batch, args.size, args.size):
            raise RuntimeError(
                f"{c.name}: expected maps of shape "
                f"{(args.batch, args.size, args.size)}, got "
                f"{tuple(maps.shape)}"
            )
        agreement[c.name] = float((min_max(maps) - reference).abs().mean())
    del outputs, maps, reference

    # Timing: warm-up rounds, then interleaved rounds with a rotating start.
    load = OtherLoad()
    for _ in range(warmup):
        for c in contenders:
            time_call(c, device)
    for r in range(repeats):
        start = r % len(contenders)
        for c in contenders[start:] + contenders[:start]:
            c.times_s.append(time_call(c, device))

    other_share = load.share()

    # Memory: one dedicated call per contender per round, after timing.
    glibc = Glibc()
    if device.type == "cuda":
        memory_method = (
            "torch.cuda.max_memory_allocated() during one call minus "
            "memory_allocated() before it "
            f"(median of {memory_repeats} calls per contender)."
        )
    else:
        fixed = glibc.fix_mmap_threshold()
        memory_method = (
            "peak resident set size (/proc/self/statm, sampled every 0.5 ms "
            "by a background thread) during one "
            "untimed call minus the RSS just before it, after gc.collect() "
            "and malloc_trim(0); "
            + (
                "glibc's mmap threshold fixed at 64 KiB for this phase so "
                "freed tensor memory leaves RSS at once; "
                if fixed
                else "glibc mallopt unavailable, so heap reuse may blur the numbers; "
            )
            + f"median of {memory_repeats} calls per contender."
        )
    for _ in range(memory_repeats):
        for c in contenders:
            c.peaks_bytes.append(measure_peak(c, device, glibc))

    plain = contenders[0]
    plain_ms = statistics.median(plain.times_s) * 1e3
    plain_mem = statistics.median(plain.peaks_bytes)
    rows = []
    for c in contenders:
        median_ms = statistics.median(c.times_s) * 1e3
        peak = statistics.median(c.peaks_bytes)
        rows.append(
            {
                "method": c.name,
                "library": c.library,
                "median_ms": median_ms,
                "x_plain_time": median_ms / plain_ms,
                "peak_mib": peak / MIB,
                "x_plain_memory": peak / plain_mem if plain_mem > 0 else float("nan"),
                "times_ms": [t * 1e3 for t in c.times_s],
                "peaks_mib": [p / MIB for p in c.peaks_bytes],
            }
        )
    by_name = {row["method"]: row for row in rows}
    targets = check_targets(by_name)

    meta = {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "device": device.type,
        "device_name": device_name(device),
        "threads": torch.get_num_threads(),
        "batch": args.batch,
        "size": args.size,
        "model": ("tiny" if args.quick else "torchvision resnet50(weights=None)")
        + ", torch.manual_seed(0), eval, layer4",
        "repeats": repeats,
        "warmup_rounds": warmup,
        "memory_repeats": memory_repeats,
        "memory_method": memory_method,
        "timing_method": (
            "median of time.perf_counter() per call over interleaved rounds "
            "(rotating start)"
        )
        + (
            "; torch.cuda.synchronize() before reading the clock"
            if device.type == "cuda"
            else ""
        ),
        "other_processes_cpu_share_during_timing": other_share,
        "versions": versions(),
        "contenders": names,
    }
    meta["total_seconds"] = time.perf_counter() - wall_start
    print(markdown(meta, rows, targets, agreement))
    print(
        f"\n(total run time {meta['total_seconds']:.0f} s; torch threads "
        f"{meta['threads']}; always exits 0)"
    )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "meta": meta,
            "results": rows,
            "targets": targets,
            "agreement_with_camlib_gradcam": agreement,
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
