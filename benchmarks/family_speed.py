"""The CAM family side by side with pytorch-grad-cam (pgc) and torchcam: time and peak memory.

    python benchmarks/family_speed.py [--device cpu|cuda] [--batch 2] [--size 224] [--rounds N]
                                      [--peer-batch N] [--json PATH] [--quick]

ResNet-18 (torchvision, random seeded weights, eval), layer4, top-1 class of each image, in one
process. Three parts:

1. Gradient methods, Eigen-CAM and Ablation-CAM of camlib against a plain forward pass:
   interleaved rounds (rotating start), median time. layer4 feeds GAP + linear, so camlib's
   Ablation-CAM takes its closed form there; "tail reruns" is the same with that turned off
   (the network's tail on every ablated copy, as at any other layer), beside its floor: one
   forward pass plus ResNet's pooling and linear layer on the K ablated copies of each image's
   layer4 output, written out by hand, at the best of three chunk sizes.
2. Ablation-CAM against pgc's AblationCAM (one call each: pgc's took 29-44 s on a 2-core CPU).
3. Score-CAM against pgc's and torchcam's ScoreCAM and against the floor: the B x K masked
   forward passes alone (random inputs of the same shape), at the best batch size of a sweep,
   in the usual and in the channels-last layout (two floor rows; the faster is the floor).
   camlib runs at its default batch size and at the floor's best; its layout trial picks the
   layout on the first call for a model, size and batch size, and later calls reuse the choice
   (both recorded per run); the peers, which feed the usual layout, at the best batch size for it.
   ``--score-rounds`` interleaved rounds (rotating order), each method's fastest round counts;
   as a check on the machine's drift, camlib's ratio to the faster floor is also taken round by
   round (its median is reported beside it), and then in ``--score-blocks`` ABBA blocks (floor,
   camlib, camlib, floor, and camlib, floor, floor, camlib in alternate blocks; camlib at its
   default batch size), where a drift that is linear over a block cancels.

Peers run on the first ``--peer-batch`` images (default: all on CPU, 16 on CUDA) and their times
are scaled per image, which is said in the output. Peak memory: on CUDA max_memory_allocated
during the call minus memory_allocated before; on CPU peak RSS during the call minus RSS before
(sampled by a thread; glibc's mmap threshold fixed so freed memory leaves RSS). On the CPU every
part is timed first, with glibc's default allocator and no sampling thread; the peaks are then
measured in separate calls (two per contender in part 1, one in parts 2 and 3). The memory
settings cost time: on a 2-core CPU, 1,024 masked forwards took 20 s with them against 14.5 s
without, for the floor and camlib alike, so timing under them (as this script did until
2026-11-28) inflates every part-3 time by about a third, not their ratios.
Always exits 0: targets are reported, never enforced.
"""
from __future__ import annotations

import argparse
import copy
import datetime as _dt
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
from camlib import perturbation  # noqa: E402
from speed_memory import Glibc, OtherLoad, RssSampler, device_name, versions  # noqa: E402

MIB = 1024.0 * 1024.0
ABLATION_FLOOR_CHANNELS = (32, 128, 512)
QUICK_METHODS = ["gradcam", "gradcampp", "xgradcam", "layercam", "hirescam", "eigencam", "ablationcam"]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(call, device: torch.device, glibc: Glibc, memory: bool = True) -> tuple[float, float, object]:
    """(seconds, peak bytes above the start, result) of one call; with ``memory=False`` on the
    CPU, time only (no heap trim, no sampling thread; the peak is reported as NaN)."""
    gc.collect()
    sync(device)
    if device.type == "cpu" and not memory:
        start = time.perf_counter()
        result = call()
        return time.perf_counter() - start, float("nan"), result
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        start = time.perf_counter()
        result = call()
        sync(device)
        elapsed = time.perf_counter() - start
        return elapsed, float(torch.cuda.max_memory_allocated(device) - before), result
    glibc.trim()
    with RssSampler() as sampler:
        start = time.perf_counter()
        result = call()
        elapsed = time.perf_counter() - start
    return elapsed, float(sampler.peak - sampler.baseline), result


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten(1).double().cpu(), b.flatten(1).double().cpu()
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return float(((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))).min())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds of part 1 (15 CPU, 20 CUDA)")
    parser.add_argument("--peer-batch", type=int, default=None, help="images given to the peers (default all; 16 on CUDA)")
    parser.add_argument("--sweep", default=None,
                        help="batch sizes tried for the Score-CAM floor (8,16,32,64; CUDA 32,...,256)")
    parser.add_argument("--score-rounds", type=int, default=None,
                        help="interleaved rounds of part 3 (each method's fastest counts; "
                             "default 3, 1 with --quick)")
    parser.add_argument("--score-blocks", type=int, default=None,
                        help="ABBA blocks of the faster floor and camlib's Score-CAM (default "
                             "batch size) after the rounds (default 3, 1 with --quick)")
    parser.add_argument("--parts", default="1,2,3", help="which parts to run (part 1 always runs)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: batch 1, size 64, 1 round, sweep 8,16, no peers' Score-CAM "
                             "(part 3's rounds and blocks as given, else 1)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available")
    device = torch.device(args.device)
    if args.quick:
        args.size, args.rounds, args.batch, args.sweep = 64, 1, 1, "8,16"
    default_score = 1 if args.quick else 3
    args.score_rounds = args.score_rounds or default_score
    args.score_blocks = default_score if args.score_blocks is None else args.score_blocks
    rounds = args.rounds or (20 if device.type == "cuda" else 15)
    args.sweep = args.sweep or ("32,64,128,256" if device.type == "cuda" else "8,16,32,64")
    peer_batch = min(args.batch, args.peer_batch or (16 if device.type == "cuda" else args.batch))
    wall = time.perf_counter()
    glibc = Glibc()
    load = OtherLoad()

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval().to(device)
    x = torch.randn(args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(0)).to(device)
    with torch.no_grad():
        top1 = model(x).argmax(1)
    rows: list[dict] = []

    def row(part: str, name: str, seconds: float, peak: float, images: int, **extra) -> dict:
        entry = {"part": part, "method": name, "seconds": seconds, "images": images,
                 "seconds_per_image": seconds / images, "peak_mib": peak / MIB, **extra}
        rows.append(entry)
        print(f"  {name}: {seconds:.3f} s for {images} images, peak {peak / MIB:.1f} MiB", flush=True)
        return entry

    # 1. camlib's family against a plain forward, interleaved.
    print("part 1: camlib against a plain forward", flush=True)

    def plain():
        with torch.no_grad():
            return model(x)

    calls = {"plain forward (no_grad)": plain}
    for method in QUICK_METHODS:
        calls[f"camlib {method}"] = (lambda m=method: camlib.explain(model, x, method=m, layers="layer4", classes=top1))
    calls["camlib ablationcam, tail reruns"] = lambda: ablation_by_tail(model, x, top1)
    for channels in ABLATION_FLOOR_CHANNELS:
        calls[f"floor: forward + ablated tail ({channels} channels per pass)"] = (
            lambda c=channels: ablation_floor(model, x, c))
    times = {name: [] for name in calls}
    peaks = {name: [] for name in calls}
    names = list(calls)
    for name in names:  # warm-up
        calls[name]()
    for r in range(rounds):  # timing with glibc's default allocator behaviour
        for name in names[r % len(names):] + names[: r % len(names)]:
            seconds, _, _ = measure(calls[name], device, glibc, memory=False)
            times[name].append(seconds)
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    xp, targets = x[:peer_batch], [ClassifierOutputTarget(int(c)) for c in top1[:peer_batch]]
    parts = {int(p) for p in args.parts.split(",")}
    finish2 = finish3 = None  # each part's timings, made rows once its peaks are measured
    if 2 in parts:
        finish2 = part2(model, x, xp, targets, top1, peer_batch, device, glibc, row, pgc)
    if 3 in parts:
        finish3 = part3(args, model, x, xp, targets, top1, peer_batch, device, glibc, row, pgc)
    # memory after all timing: glibc's mmap threshold fixed, so freed blocks leave RSS (Glibc)
    print("peak memory, in separate calls", flush=True)
    glibc_fixed = device.type == "cpu" and glibc.fix_mmap_threshold()
    for name in names:
        for _ in range(2 if device.type == "cpu" else 1):
            peaks[name].append(measure(calls[name], device, glibc)[1])
    plain_s = statistics.median(times[names[0]])
    plain_peak = statistics.median(peaks[names[0]])
    for name in names:
        seconds = statistics.median(times[name])
        entry = row("1", name, seconds, statistics.median(peaks[name]), args.batch)
        entry["x_plain_time"] = seconds / plain_s
        entry["x_plain_memory"] = entry["peak_mib"] * MIB / plain_peak if plain_peak > 0 else None
    ablation_speedup = finish2() if finish2 else None
    score_entries = finish3() if finish3 else None
    summary = summarise(rows, names, ablation_speedup, score_entries if 3 in parts else None)
    meta = meta_of(args, device, rounds, peer_batch, glibc_fixed, load, wall)
    print()
    print(markdown(meta, rows, summary))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"meta": meta, "results": rows, "summary": summary}, indent=2) + "\n")
    return 0


def part2(model, x, xp, targets, top1, peer_batch, device, glibc, row, pgc):
    """Ablation-CAM against pgc's, timed (one call each); returns a function that measures
    the peaks (call it once all parts are timed), makes the rows and returns the speed-up per
    image."""
    print("part 2: Ablation-CAM", flush=True)
    pgc_model = copy.deepcopy(model)
    extractor = pgc.AblationCAM(model=pgc_model, target_layers=[pgc_model.layer4])
    calls = {
        "camlib ablationcam (again, beside pgc)":
            lambda: camlib.explain(model, x, method="ablationcam", layers="layer4", classes=top1),
        "camlib ablationcam, tail reruns (again, beside pgc)":
            lambda: ablation_by_tail(model, x, top1),
        "pgc AblationCAM": lambda: extractor(input_tensor=xp, targets=targets),
    }
    timed = {name: measure(call, device, glibc, memory=False) for name, call in calls.items()}

    def finish() -> float:
        entries = {}
        for name, (s, peak, _) in timed.items():
            if device.type == "cpu":
                peak = measure(calls[name], device, glibc)[1]
            images = peer_batch if name.startswith("pgc") else x.shape[0]
            entries[name] = row("2", name, s, peak, images)
        extractor.__exit__(None, None, None)
        (ours_s, _, ours), (tail_s, _, tail), (_, _, theirs) = timed.values()
        entry = entries["pgc AblationCAM"]
        entry["agreement_r_min"] = pearson(ours.maps[:peer_batch, 0], torch.as_tensor(theirs))
        entry["agreement_r_min_tail_reruns"] = pearson(tail.maps[:peer_batch, 0],
                                                       torch.as_tensor(theirs))
        entry["speedup_tail_reruns"] = entry["seconds_per_image"] / (tail_s / x.shape[0])
        return entry["seconds_per_image"] / (ours_s / x.shape[0])
    return finish


def part3(args, model, x, xp, targets, top1, peer_batch, device, glibc, row, pgc) -> tuple:
    """Score-CAM: the floors, camlib twice, the peers, timed; returns a function that measures
    the peaks (call it once all parts are timed), makes the rows and returns camlib's (at the
    floor's batch size, at its default)."""
    print("part 3: Score-CAM", flush=True)
    channels = 512
    forwards = args.batch * channels
    sweep = [int(v) for v in args.sweep.split(",")]
    layouts = {"usual layout": torch.contiguous_format, "channels-last": torch.channels_last}
    swept: dict[str, dict[int, float]] = {label: {} for label in layouts}  # images/s
    for label, layout in layouts.items():
        for bs in sweep:
            probe = torch.randn(bs, 3, args.size, args.size, device=device)
            probe = probe.contiguous(memory_format=layout)
            reps = max(1, 64 // bs) if not args.quick else 1
            with torch.no_grad():
                model(probe)
                sync(device)
                start = time.perf_counter()
                for _ in range(reps):
                    model(probe)
                sync(device)
            rate = bs * reps / (time.perf_counter() - start)
            print(f"  masked forwards at batch {bs}, {label}: {rate:.1f} images/s", flush=True)
            swept[label][bs] = rate
    best = {label: max(rates.items(), key=lambda item: item[1])  # (batch size, images/s)
            for label, rates in swept.items()}
    usual_batch = best["usual layout"][0]  # the peers' batch size: they feed the usual layout

    def floor(layout, bs):
        masked = torch.randn(bs, 3, args.size, args.size, device=device)
        masked = masked.contiguous(memory_format=layout)
        with torch.no_grad():
            for start in range(0, forwards, bs):
                model(masked[: min(bs, forwards - start)])

    calls = {f"floor: {forwards} masked forwards at batch {best[label][0]}, {label}":
             (lambda layout=layout, bs=best[label][0]: floor(layout, bs))
             for label, layout in layouts.items()}
    # camlib twice: as a user gets it (its default batch size) and at the floor's best batch
    # size; its layout trial picks the layout in both (recorded per run)
    floor_batch = max(best.values(), key=lambda entry: entry[1])[0]
    trials, chosen, tried, timed = [], {}, {}, {}
    original_init = perturbation.LayoutTrial.__init__

    def recording_init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        trials.append(self)

    perturbation.LayoutTrial.__init__ = recording_init

    def ours(name: str, batch_size: int | None):
        def call():
            result = camlib.explain(model, x, method="scorecam", layers="layer4", classes=top1,
                                    batch_size=batch_size)
            layout = trials[-1].chosen
            chosen.setdefault(name, []).append(
                "channels-last" if layout is torch.channels_last else "usual")
            tried.setdefault(name, []).append(not trials[-1].reused)
            timed.setdefault(name, []).append(trials[-1].timed)
            return result
        calls[name] = call

    default_batch = perturbation.default_score_batch(device)
    ours(f"camlib scorecam (default batch size, {default_batch})", None)
    ours(f"camlib scorecam (batch_size {floor_batch}, the floor's best)", floor_batch)
    images = {name: args.batch for name in calls}
    if not args.quick:
        pgc_model = copy.deepcopy(model)
        pgc_extractor = pgc.ScoreCAM(model=pgc_model, target_layers=[pgc_model.layer4])
        pgc_extractor.batch_size = usual_batch
        from torchcam.methods import ScoreCAM

        tc_model = copy.deepcopy(model)
        tc_extractor = ScoreCAM(tc_model, target_layer="layer4", batch_size=usual_batch,
                                input_shape=tuple(x.shape[1:]))

        def torchcam_call():
            with torch.no_grad():
                scores = tc_model(xp)
            return tc_extractor(class_idx=top1[:peer_batch].tolist(), scores=scores)[0]

        calls[f"pgc ScoreCAM (batch_size {usual_batch})"] = lambda: pgc_extractor(input_tensor=xp, targets=targets)
        calls[f"torchcam ScoreCAM (batch_size {usual_batch})"] = torchcam_call
        images.update({name: peer_batch for name in list(calls)[4:]})
    # Interleaved rounds, rotating the order, time only; each method's fastest round counts
    # (in the 2026-11-28 05:08 run on a 2-core CPU, single calls of 25-43 s drifted by up to 40%).
    names = list(calls)
    runs = {name: [] for name in names}
    for r in range(args.score_rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            runs[name].append(measure(calls[name], device, glibc, memory=False))
    # ABBA blocks: the faster floor and camlib at its default batch size back to back (floor,
    # camlib, camlib, floor, and camlib, floor, floor, camlib in alternate blocks): a drift of
    # the machine's speed that is linear over a block cancels in camlib's two times / the floor's
    fastest_floor = min(names[:2], key=lambda name: min(run[0] for run in runs[name]))
    abba = []
    for j in range(args.score_blocks):
        pair = [fastest_floor, names[2]] if j % 2 == 0 else [names[2], fastest_floor]
        times = {name: 0.0 for name in pair}
        for name in pair + pair[::-1]:
            times[name] += measure(calls[name], device, glibc, memory=False)[0]
        abba.append(times[names[2]] / times[fastest_floor])
    perturbation.LayoutTrial.__init__ = original_init

    def release() -> None:
        if not args.quick:
            tc_extractor.remove_hooks()
            pgc_extractor.__exit__(None, None, None)
    # the timed calls' records (the memory calls that follow must not add to them)
    records = [{k: list(v) for k, v in d.items()} for d in (chosen, tried, timed)]
    return lambda: finish3(args, runs, calls, names, images, abba, records, release, device,
                           glibc, row, model, x, peer_batch, list(swept.values()))


def finish3(args, runs, calls, names, images, abba, records, release, device, glibc, row,
            model, x, peer_batch, swept) -> tuple:
    """Part 3's peaks (one call each on the CPU, after all timing) and rows."""
    chosen, tried, timed = records
    entries = {}
    for name in names:
        s = min(run[0] for run in runs[name])
        if device.type == "cpu":
            peak = measure(calls[name], device, glibc)[1]
        else:
            peak = min(run[1] for run in runs[name])
        entries[name] = row("3", name, s, peak, images[name], rounds=[run[0] for run in runs[name]])
    release()
    floors = [entries[names[0]], entries[names[1]]]
    for floor_entry, rates in zip(floors, swept):  # the sweep that chose its batch size
        floor_entry["sweep_images_per_s"] = {str(bs): rate for bs, rate in rates.items()}
    default_entry, score_entry = entries[names[2]], entries[names[3]]
    ours_maps = runs[names[2]][-1][2]
    f = camlib.Explainer(model, "scorecam", "layer4").capture(x).activations["layer4"].flatten(2)
    default_entry["x_floor_abba"] = abba
    for entry in (default_entry, score_entry):
        entry["constant_channels"] = int((f.amax(2) == f.amin(2)).sum())
        entry["x_floor"] = entry["seconds"] / min(e["seconds"] for e in floors)
        # the same ratio round by round (each round's faster floor), a check on the drift
        entry["x_floor_by_round"] = [
            mine / min(e["rounds"][r] for e in floors) for r, mine in enumerate(entry["rounds"])]
        n = args.score_rounds  # the rounds' runs; the ABBA blocks' runs follow
        entry["layouts_chosen"] = chosen[entry["method"]][:n]
        entry["layout_trial_ran"] = tried[entry["method"]][:n]  # False: remembered choice
        entry["trial_chunks"] = timed[entry["method"]][:n]  # chunks timed by the trial, per run
        if entry is default_entry:
            entry["layouts_chosen_abba"] = chosen[entry["method"]][n:]
            entry["trial_chunks_abba"] = timed[entry["method"]][n:]
    if not args.quick:
        theirs = runs[names[4]][-1][2]
        entries[names[4]]["agreement_r_min"] = pearson(ours_maps.maps[:peer_batch, 0],
                                                       torch.as_tensor(theirs))
        theirs = runs[names[5]][-1][2]
        low = camlib.postprocess.normalize(ours_maps.raw["layer4"][:peer_batch, 0].clamp_min(0))
        entries[names[5]]["agreement_r_min"] = pearson(low, theirs.detach())
    return score_entry, default_entry


def ablation_by_tail(model, x, classes):
    """camlib's Ablation-CAM with the closed form for GAP + linear heads turned off: the
    network's tail runs on every ablated copy (what it does at layers that feed no such head)."""
    perturbation.GAP_SHORTCUT = False
    try:
        return camlib.explain(model, x, method="ablationcam", layers="layer4", classes=classes)
    finally:
        perturbation.GAP_SHORTCUT = True


def ablation_floor(model, x, channels: int):
    """What Ablation-CAM at ResNet's layer4 cannot avoid, written out by hand for this model:
    one forward pass, then the pooling and linear layer on the K ablated copies of each image's
    layer4 output, ``channels`` ablated channels per image per pass."""
    with torch.no_grad():
        f = model.layer4(model.layer3(model.layer2(model.layer1(
            model.maxpool(model.relu(model.bn1(model.conv1(x))))))))
        logits = model.fc(torch.flatten(model.avgpool(f), 1))
        k = f.shape[1]
        for start in range(0, k, channels):
            n = min(channels, k - start)
            copies = f[:, None].repeat(1, n, 1, 1, 1)
            copies[:, torch.arange(n), torch.arange(start, start + n)] = 0
            model.fc(torch.flatten(model.avgpool(copies.flatten(0, 1)), 1))
    return logits


def summarise(rows: list[dict], names: list[str], ablation_speedup, score_entries) -> dict:
    by = {r["method"]: r for r in rows if r["part"] == "1"}
    floors = [r for r in rows if r["part"] == "1" and r["method"].startswith("floor")]
    gradient = [r for r in rows if r["part"] == "1" and r["method"].startswith("camlib")
                and not r["method"].startswith(("camlib ablationcam", "camlib eigencam"))]
    floor = min(r["x_plain_time"] for r in floors)
    summary = {
        "gradient methods, worst x plain forward": max(r["x_plain_time"] for r in gradient),
        "camlib eigencam x plain forward": by["camlib eigencam"]["x_plain_time"],
        "camlib ablationcam x plain forward": by["camlib ablationcam"]["x_plain_time"],
        "Ablation-CAM floor (best of the sweep) x plain forward": floor,
        "camlib ablationcam, tail reruns x plain forward": by["camlib ablationcam, tail reruns"]["x_plain_time"],
        "camlib ablationcam, tail reruns x the floor": by["camlib ablationcam, tail reruns"]["x_plain_time"] / floor,
    }
    if ablation_speedup is not None:
        summary["Ablation-CAM speed-up over pgc (per image)"] = ablation_speedup
    if score_entries is None:
        return summary
    score_entry, default = score_entries
    summary["Score-CAM (the floor's batch size) x floor"] = score_entry["x_floor"]
    summary["Score-CAM (default batch size) x floor"] = default["x_floor"]
    for label, entry in (("the floor's batch size", score_entry), ("default batch size", default)):
        summary[f"Score-CAM ({label}) x floor, median of the rounds' ratios"] = (
            statistics.median(entry["x_floor_by_round"]))
    if default["x_floor_abba"]:
        summary["Score-CAM (default batch size) x floor, median of the ABBA blocks"] = (
            statistics.median(default["x_floor_abba"]))
    peers = [r for r in rows if r["part"] == "3" and not r["method"].startswith(("camlib", "floor"))]
    if peers:
        fastest = min(p["seconds_per_image"] for p in peers)
        pgc_row = next(p for p in peers if p["method"].startswith("pgc"))
        for label, entry in (("the floor's batch size", score_entry), ("default batch size", default)):
            summary[f"Score-CAM ({label}) time / fastest peer's (per image)"] = (
                entry["seconds_per_image"] / fastest)
            summary[f"Score-CAM ({label}) peak memory / pgc's (pgc on its images)"] = (
                entry["peak_mib"] / pgc_row["peak_mib"])
    return summary


def meta_of(args, device, rounds, peer_batch, glibc_fixed, load, wall) -> dict:
    return {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "device": device.type, "device_name": device_name(device), "threads": torch.get_num_threads(),
        "batch": args.batch, "peer_batch": peer_batch, "size": args.size, "rounds": rounds,
        "score_rounds": args.score_rounds, "score_blocks": args.score_blocks,
        "model": "torchvision resnet18(weights=None), torch.manual_seed(0), eval, layer4, top-1 classes",
        "glibc_mmap_threshold_fixed": glibc_fixed,
        # every part timed with glibc's default allocator and no sampling thread, the peaks
        # measured in separate calls after all timing (before 2026-11-28 15:50 UTC parts 2
        # and 3 measured both in the same calls, with the threshold fixed)
        "timing_separate_from_memory": True,
        "other_processes_cpu_share": load.share(), "versions": versions(),
        "total_seconds": time.perf_counter() - wall,
    }


def markdown(meta: dict, rows: list[dict], summary: dict) -> str:
    share = meta["other_processes_cpu_share"]
    lines = [
        f"**{meta['date']}** · torch {meta['versions']['torch']} · {meta['device_name']} · {meta['threads']} "
        f"threads · ResNet-18 (random weights), layer4 · batch {meta['batch']} (peers: {meta['peer_batch']}) · "
        f"{meta['size']}x{meta['size']} · part 1: {meta['rounds']} interleaved rounds (median) · part 3: "
        f"{meta['score_rounds']} interleaved rounds (fastest); the Score-CAM floor is the faster "
        "of its two layouts; all parts timed with glibc's default allocator, peaks measured in "
        "separate calls afterwards",
        "",
        "| part | method | s | images | s / image | peak MiB | note |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        note = []
        if "x_plain_time" in r:
            note.append(f"x{r['x_plain_time']:.2f} plain forward time")
        if "x_floor" in r:
            by_round = statistics.median(r["x_floor_by_round"])
            abba = (f", of {len(r['x_floor_abba'])} ABBA blocks x"
                    f"{statistics.median(r['x_floor_abba']):.3f}") if r.get("x_floor_abba") else ""
            note.append(f"x{r['x_floor']:.3f} floor (median of the rounds' ratios x{by_round:.3f}"
                        f"{abba}); "
                        f"{r['constant_channels']} constant channels scored once; "
                        f"layout per run: {', '.join(r['layouts_chosen'])} (chunks timed by the trial: "
                        f"{', '.join(str(t) for t in r['trial_chunks'])})")
        if "agreement_r_min" in r:
            note.append(f"r with camlib >= {r['agreement_r_min']:.5f}")
        if "agreement_r_min_tail_reruns" in r:
            note.append(f"r with camlib's tail reruns >= {r['agreement_r_min_tail_reruns']:.5f}; "
                        f"{r['speedup_tail_reruns']:.0f} x their time per image")
        lines.append(f"| {r['part']} | {r['method']} | {r['seconds']:.3f} | {r['images']} | "
                     f"{r['seconds_per_image']:.3f} | {r['peak_mib']:.1f} | {'; '.join(note)} |")
    lines += ["", *(f"- {k}: {v:.3f}" for k, v in summary.items())]
    if share is not None:
        lines.append(f"- other processes used {100 * share:.0f}% of the machine's CPU during the run"
                     + (" (busy machine: timings are noisy)" if share > 0.05 else ""))
    lines.append(f"- total run time {meta['total_seconds']:.0f} s; always exits 0")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
