"""Speed and peak-memory benchmark: camlib against a plain forward pass and other CAM libraries.

    python benchmarks/speed_memory.py [--device cpu|cuda] [--batch 8] [--size 224] [--repeats N]
                                      [--json PATH] [--quick]

Every contender makes maps of the top-1 class of every image of one batch, for ResNet-50
(torchvision, random seeded weights, eval mode) at its ``layer4``. The classes are found once by a
plain forward pass beforehand and handed to each contender. All contenders run in one process,
interleaved: each timing round calls every contender once, starting at a different one each
round, so drift (thermal, other load) is shared.

Speed is the median wall time of one call. Peak memory is the most memory a call needs on top of
what was allocated before it (model, input): on CUDA from the caching allocator's peak counter, on
CPU from the resident set size sampled by a background thread (see ``RssSampler``).

The script reports whether the camlib targets are met but always exits 0: it is a benchmark.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import ctypes
import datetime as _dt
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import camlib  # noqa: E402

MIB = 1024.0 * 1024.0
PLAIN = "plain forward (no_grad)"


# --------------------------------------------------------------------------------------------
# Contenders


@dataclass
class Contender:
    """One way of computing maps: ``call()`` does the work a user would time; ``cleanup()`` drops
    whatever the library keeps between calls (graphs, hooked tensors, parameter gradients) so that
    the next contender starts from the same memory state. ``cleanup`` is never timed."""

    name: str
    call: Callable[[], object]
    cleanup: Callable[[], None] = lambda: None
    library: str = ""
    times_s: list[float] = field(default_factory=list)
    peaks_bytes: list[float] = field(default_factory=list)


def to_maps(output: object) -> torch.Tensor:
    """A contender's output as a float tensor of maps [B, H, W] (first class), for the sanity check."""
    if isinstance(output, camlib.Explanation):
        return output.maps[:, 0]
    if isinstance(output, torch.Tensor):
        return output.reshape(output.shape[0], *output.shape[-2:]) if output.ndim == 4 else output
    return torch.as_tensor(output)


def min_max(maps: torch.Tensor) -> torch.Tensor:
    low = maps.amin(dim=(-2, -1), keepdim=True)
    spread = maps.amax(dim=(-2, -1), keepdim=True) - low
    return (maps - low) / spread.clamp_min(1e-12)


def build_contenders(model: torch.nn.Module, x: torch.Tensor, top1: torch.Tensor, top3: torch.Tensor) -> list[Contender]:
    size = tuple(x.shape[-2:])
    top1_list = top1.tolist()
    contenders: list[Contender] = []

    # (1) The baseline: what the classifier costs on its own.
    def plain() -> torch.Tensor:
        with torch.no_grad():
            return model(x)

    contenders.append(Contender(PLAIN, plain, library="torch"))

    # (2)-(4) camlib, one-shot calls (hooks attached and removed inside each call).
    contenders.append(Contender(
        "camlib CAM",
        lambda: camlib.explain(model, x, method="cam", layers="layer4", classes=top1),
        library="camlib",
    ))
    contenders.append(Contender(
        "camlib Grad-CAM",
        lambda: camlib.explain(model, x, method="gradcam", layers="layer4", classes=top1),
        library="camlib",
    ))
    contenders.append(Contender(
        "camlib Grad-CAM top-3",
        lambda: camlib.explain(model, x, method="gradcam", layers="layer4", classes=top3),
        library="camlib",
    ))

    # The other libraries keep forward hooks on the model for as long as their extractor lives;
    # each gets its own copy of the model (same weights) so that its hooks never fire (or hold
    # tensors) while another contender runs.

    # (5) pytorch-grad-cam: built once, as a user would; it returns numpy maps at input size.
    from pytorch_grad_cam import GradCAM as PgcGradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    pgc_model = copy.deepcopy(model)
    pgc = PgcGradCAM(model=pgc_model, target_layers=[pgc_model.layer4[-1]])
    pgc_targets = [ClassifierOutputTarget(c) for c in top1_list]

    def pgc_cleanup() -> None:
        # It keeps the last output (and with it the retained autograd graph of the whole network),
        # the hooked activations and gradients, and the parameters' .grad.
        pgc.outputs = None
        pgc.activations_and_grads.activations = []
        pgc.activations_and_grads.gradients = []
        pgc_model.zero_grad(set_to_none=True)

    contenders.append(Contender(
        "pytorch-grad-cam GradCAM", lambda: pgc(input_tensor=x, targets=pgc_targets), pgc_cleanup,
        library="grad-cam",
    ))

    # (6) torchcam Grad-CAM: forward with grad enabled, then the extractor backpropagates from the
    # scores to the hooked layer4 output. It returns normalised maps at layer4 resolution; they are
    # upsampled to input size here, as camlib's and pytorch-grad-cam's are.
    from torchcam.methods import CAM as TcCAM
    from torchcam.methods import GradCAM as TcGradCAM

    tc_grad_model = copy.deepcopy(model)
    tc_grad = TcGradCAM(tc_grad_model, target_layer="layer4", input_shape=tuple(x.shape[1:]))

    def torchcam_gradcam() -> torch.Tensor:
        with torch.enable_grad():
            scores = tc_grad_model(x)
            cams = tc_grad(class_idx=top1_list, scores=scores)
        return F.interpolate(cams[0].unsqueeze(1), size=size, mode="bilinear", align_corners=False)

    contenders.append(Contender("torchcam GradCAM", torchcam_gradcam, tc_grad.reset_hooks, library="torchcam"))

    # (7) torchcam CAM: forward without grad, then the fc weights of the classes.
    tc_cam_model = copy.deepcopy(model)
    tc_cam = TcCAM(tc_cam_model, target_layer="layer4", fc_layer="fc", input_shape=tuple(x.shape[1:]))

    def torchcam_cam() -> torch.Tensor:
        with torch.no_grad():
            tc_cam_model(x)
            cams = tc_cam(class_idx=top1_list)
        return F.interpolate(cams[0].unsqueeze(1), size=size, mode="bilinear", align_corners=False)

    contenders.append(Contender("torchcam CAM", torchcam_cam, tc_cam.reset_hooks, library="torchcam"))

    # (8) Captum LayerGradCam (hooks only during attribute(), so it can share the model); ReLU'd
    # as in the paper and upsampled bilinearly to input size; Captum does not normalise.
    from captum.attr import LayerAttribution, LayerGradCam

    captum_gc = LayerGradCam(model, model.layer4)

    def captum_gradcam() -> torch.Tensor:
        attributions = captum_gc.attribute(x, target=top1, relu_attributions=True)
        return LayerAttribution.interpolate(attributions, size, interpolate_mode="bilinear")

    contenders.append(Contender("Captum LayerGradCam", captum_gradcam, library="captum"))
    return contenders


# --------------------------------------------------------------------------------------------
# Measurement


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(contender: Contender, device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    result = contender.call()
    synchronize(device)
    elapsed = time.perf_counter() - start
    del result
    contender.cleanup()
    return elapsed


class RssSampler(threading.Thread):
    """Samples this process's resident set size (/proc/self/statm) every ``interval_s``.

    Torch releases the GIL inside its kernels, so the thread keeps sampling during the call.
    """

    def __init__(self, interval_s: float = 0.0005) -> None:
        super().__init__(daemon=True)
        self.interval_s = interval_s
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.fd = os.open("/proc/self/statm", os.O_RDONLY)
        self.baseline = self.read()
        self.peak = self.baseline
        self.samples = 0
        self._halt = threading.Event()
        self._started = threading.Event()

    def read(self) -> int:
        return int(os.pread(self.fd, 256, 0).split()[1]) * self.page

    def run(self) -> None:
        self._started.set()
        while not self._halt.is_set():
            rss = self.read()
            if rss > self.peak:
                self.peak = rss
            self.samples += 1
            time.sleep(self.interval_s)

    def __enter__(self) -> RssSampler:
        self.start()
        self._started.wait()
        return self

    def __exit__(self, *exc: object) -> None:
        self._halt.set()
        self.join()
        self.peak = max(self.peak, self.read())
        os.close(self.fd)


class Glibc:
    """Makes freed CPU tensor memory go back to the OS at once, so RSS tracks what is in use.

    glibc serves large blocks with mmap and unmaps them on free, but by default it raises its
    mmap threshold (up to 32 MiB) each time such a block is freed; later blocks below it then come
    from the heap and stay resident after free. Fixing the threshold (which turns the adjustment
    off) and trimming the heap before each call keeps RSS equal to live memory plus small change.
    Only used for the memory phase, after timing, so the timings see glibc's default behaviour.
    """

    M_TRIM_THRESHOLD = -1
    M_MMAP_THRESHOLD = -3

    def __init__(self) -> None:
        try:
            self.libc = ctypes.CDLL("libc.so.6")
            self.ok = bool(self.libc.malloc_trim)
        except (OSError, AttributeError):
            self.libc, self.ok = None, False

    def fix_mmap_threshold(self, threshold: int = 64 * 1024) -> bool:
        if not self.ok:
            return False
        ok_mmap = self.libc.mallopt(self.M_MMAP_THRESHOLD, threshold) == 1
        ok_trim = self.libc.mallopt(self.M_TRIM_THRESHOLD, 1024 * 1024) == 1
        return ok_mmap and ok_trim

    def trim(self) -> None:
        if self.ok:
            self.libc.malloc_trim(0)


def measure_peak(contender: Contender, device: torch.device, glibc: Glibc) -> float:
    """Peak memory of one call above what was in use just before it, in bytes."""
    gc.collect()
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        result = contender.call()
        synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - before
    else:
        glibc.trim()
        with RssSampler() as sampler:
            result = contender.call()
        peak = sampler.peak - sampler.baseline
    del result
    contender.cleanup()
    return float(peak)


# --------------------------------------------------------------------------------------------
# Reporting


class OtherLoad:
    """Share of the machine's CPU time that other processes used between start() and stop().

    On a machine with few cores, anything else running (a notebook, a test suite) slows the
    contenders unevenly; the benchmark reports this so a noisy run can be recognised and redone.
    """

    def __init__(self) -> None:
        self.tick = os.sysconf("SC_CLK_TCK")
        self.start_busy, self.start_own, self.start_wall = self._busy(), self._own(), time.perf_counter()

    @staticmethod
    def _busy() -> int | None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
            # user nice system idle iowait irq softirq steal ...
            return sum(fields[:3]) + sum(fields[5:8])
        return None

    @staticmethod
    def _own() -> int | None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            after_name = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
            # utime, stime (all threads), cutime, cstime (children waited for): a
            # benchmark that runs its contenders in child processes counts them as its own
            return sum(int(v) for v in after_name[11:15])
        return None

    def share(self) -> float | None:
        busy, own = self._busy(), self._own()
        if None in (busy, own, self.start_busy, self.start_own):
            return None
        capacity = (time.perf_counter() - self.start_wall) * self.tick * (os.cpu_count() or 1)
        return max(0.0, (busy - self.start_busy) - (own - self.start_own)) / capacity if capacity > 0 else None


def run_meta(load: OtherLoad, wall: float, **fields) -> dict:
    """A benchmark's ``meta``: the date, its own ``fields``, other processes' CPU share since
    ``load`` started, the versions (with the commit) and the seconds since ``wall``."""
    return {"date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"), **fields,
            "other_processes_cpu_share": load.share(), "versions": versions(),
            "total_seconds": time.perf_counter() - wall}


def write_json(path: Path | None, payload: dict) -> None:
    """Write ``payload`` as indented JSON to ``path`` (its folder made), unless it is None."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=2) + "\n")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip() + f" ({os.cpu_count()} logical CPUs)"
    return platform.processor() or "CPU"


def versions() -> dict[str, object]:
    found = {"python": platform.python_version(), "torch": torch.__version__,
             "torchvision": torchvision.__version__, "camlib": camlib.__version__}
    for label, module in (("grad-cam", "pytorch_grad_cam"), ("torchcam", "torchcam"), ("captum", "captum")):
        with contextlib.suppress(Exception):
            from importlib.metadata import version
            found[label] = version(label)
            continue
        found[label] = getattr(sys.modules.get(module), "__version__", "?")
    found.update(code_state())
    return found


def code_state() -> dict[str, object]:
    """The git commit the run's code is on, and whether the code in camlib/ or benchmarks/
    differs from it: changed tracked files or new Python files, results files aside (None where
    git or the checkout is missing)."""
    def git(*args: str) -> str | None:
        with contextlib.suppress(Exception):
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                                  check=True, timeout=10).stdout.strip()
        return None

    changed = git("status", "--porcelain", "--untracked-files=all", "--", "camlib",
                  "benchmarks", ":(exclude)camlib/results", ":(exclude)benchmarks/results")
    if changed is not None:  # tracked files changed, or new Python files
        changed = [line for line in changed.splitlines()
                   if not line.startswith("??") or line.endswith(".py")]
    return {"commit": git("rev-parse", "HEAD"),
            "uncommitted_changes": None if changed is None else bool(changed)}


def check_targets(rows: dict[str, dict]) -> list[dict]:
    cam, gradcam, pgc = rows["camlib CAM"], rows["camlib Grad-CAM"], rows["pytorch-grad-cam GradCAM"]
    speedup = pgc["median_ms"] / gradcam["median_ms"]
    return [
        {"target": "camlib CAM time <= 1.05x plain forward", "value": cam["x_plain_time"], "limit": 1.05,
         "passed": cam["x_plain_time"] <= 1.05},
        {"target": "camlib Grad-CAM time <= 1.2x plain forward", "value": gradcam["x_plain_time"], "limit": 1.2,
         "passed": gradcam["x_plain_time"] <= 1.2},
        {"target": "camlib Grad-CAM >= 2x faster than pytorch-grad-cam GradCAM", "value": speedup, "limit": 2.0,
         "passed": speedup >= 2.0},
        {"target": "camlib Grad-CAM peak memory <= 1.3x plain forward's", "value": gradcam["x_plain_memory"],
         "limit": 1.3, "passed": gradcam["x_plain_memory"] <= 1.3},
    ]


def markdown(meta: dict, rows: list[dict], targets: list[dict], agreement: dict[str, float]) -> str:
    lines = [
        f"**{meta['date']}** · torch {meta['versions']['torch']} · {meta['device_name']} · "
        f"{meta['threads']} threads · batch {meta['batch']} · size {meta['size']}x{meta['size']} · "
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
        warning = " -- WARNING: the machine was busy, timings are unreliable; rerun when it is idle" if share > 0.05 else ""
        lines += [f"Other processes used {100 * share:.1f}% of the machine's CPU time during the timing rounds{warning}.", ""]
    lines.append("Agreement of top-1 maps with camlib Grad-CAM (min-max scaled, mean |difference|): " + ", ".join(
        f"{name} {value:.3g}" for name, value in agreement.items()
    ))
    lines.append("")
    for target in targets:
        verdict = "PASS" if target["passed"] else "FAIL"
        lines.append(f"- {verdict}: {target['target']} (measured {target['value']:.2f}, limit {target['limit']})")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=None, help="timing rounds (default 15 on CPU, 50 on CUDA)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed rounds first (default 2)")
    parser.add_argument("--memory-repeats", type=int, default=None, help="memory calls per contender (default 5)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers and metadata here")
    parser.add_argument("--quick", action="store_true", help="smoke run: batch 2, size 64, 2 rounds")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.size = 2, 64
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
    model = torchvision.models.resnet50(weights=None).eval().to(device)
    x = torch.randn(args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(0)).to(device)
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
            raise RuntimeError(f"{c.name}: expected maps of shape {(args.batch, args.size, args.size)}, got {tuple(maps.shape)}")
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
        memory_method = ("torch.cuda.max_memory_allocated() during one call minus memory_allocated() before it "
                         f"(median of {memory_repeats} calls per contender).")
    else:
        fixed = glibc.fix_mmap_threshold()
        memory_method = (
            "peak resident set size (/proc/self/statm, sampled every 0.5 ms by a background thread) during one "
            "untimed call minus the RSS just before it, after gc.collect() and malloc_trim(0); "
            + ("glibc's mmap threshold fixed at 64 KiB for this phase so freed tensor memory leaves RSS at once; "
               if fixed else "glibc mallopt unavailable, so heap reuse may blur the numbers; ")
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
        rows.append({
            "method": c.name,
            "library": c.library,
            "median_ms": median_ms,
            "x_plain_time": median_ms / plain_ms,
            "peak_mib": peak / MIB,
            "x_plain_memory": peak / plain_mem if plain_mem > 0 else float("nan"),
            "times_ms": [t * 1e3 for t in c.times_s],
            "peaks_mib": [p / MIB for p in c.peaks_bytes],
        })
    by_name = {row["method"]: row for row in rows}
    targets = check_targets(by_name)

    meta = {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "device": device.type,
        "device_name": device_name(device),
        "threads": torch.get_num_threads(),
        "batch": args.batch,
        "size": args.size,
        "model": "torchvision resnet50(weights=None), torch.manual_seed(0), eval, layer4",
        "repeats": repeats,
        "warmup_rounds": warmup,
        "memory_repeats": memory_repeats,
        "memory_method": memory_method,
        "timing_method": "median of time.perf_counter() per call over interleaved rounds (rotating start)"
        + ("; torch.cuda.synchronize() before reading the clock" if device.type == "cuda" else ""),
        "other_processes_cpu_share_during_timing": other_share,
        "versions": versions(),
        "contenders": names,
    }
    meta["total_seconds"] = time.perf_counter() - wall_start
    print(markdown(meta, rows, targets, agreement))
    print(f"\n(total run time {meta['total_seconds']:.0f} s; torch threads {meta['threads']}; always exits 0)")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {"meta": meta, "results": rows, "targets": targets, "agreement_with_camlib_gradcam": agreement}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
