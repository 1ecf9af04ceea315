"""Where camlib's Score-CAM spends its time, against the floor of its masked forward passes.

    python benchmarks/scorecam_overhead.py [--batch-size N] [--layout {usual,channels-last}]
                                           [--pairs 4] [--size 224] [--json PATH]

The same model and images as ``family_speed.py`` (ResNet-18, random seeded weights, layer4, 2
images of 224 x 224, top-1 classes). Hooks on the model time every forward pass inside
camlib's call, so the call splits into time in forward passes and time outside them (masks,
upsampling, softmax, bookkeeping). Beside it, in alternating order (floors first in pairs 1,
3, ..., camlib first in pairs 2, 4, ...), two floors at the same batch size and layout, whose
own order also alternates (random first in pairs 1, 2, 5, 6, ..., masked first in the others,
so that neither floor always runs right after camlib; the balance needs a multiple of 4 pairs,
and even then, counting the discarded first call, the random floor follows camlib once more):

- ``random``: the B x K forward passes on one random tensor (``family_speed.py``'s floor);
- ``masked``: the same number of passes on a chunk of camlib's own masked images (recorded by
  the hooks), which tells whether the data change the convolutions' speed.

A third figure, ``camlib's count``, is not run: it is the random floor scaled to the number of
images camlib forwarded (the first pass, the masked ones; constant channels share one).

Each pair reports camlib's time over each floor. A first camlib call (the layout trial, then
remembered) is run and discarded. ``--layout`` defaults to the layout camlib's trial chose.
The JSON's ``meta.versions`` holds the commit and whether camlib/ or benchmarks/ differed from
it. Nothing is enforced: exits 0 unless the batch size leaves no full chunk to record.
"""
from __future__ import annotations

import argparse
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
from speed_memory import versions  # noqa: E402

LAYOUTS = {"usual": torch.contiguous_format, "channels-last": torch.channels_last}


class ForwardClock:
    """Times the model's forward passes and counts the images they see; keeps the last chunk
    of ``keep_batch`` images (after the layout trial: in the layout camlib chose)."""

    def __init__(self, model: torch.nn.Module, keep_batch: int):
        self.seconds, self.images, self.kept, self.keep_batch = 0.0, 0, None, keep_batch
        self._start = 0.0
        self.handles = [model.register_forward_pre_hook(self._pre),
                        model.register_forward_hook(self._post)]

    def _pre(self, module, args):
        batch = args[0]
        if batch.shape[0] == self.keep_batch:
            self.kept = batch.detach().clone(memory_format=torch.preserve_format)
        self.images += batch.shape[0]
        self._start = time.perf_counter()

    def _post(self, module, args, output):
        self.seconds += time.perf_counter() - self._start

    def reset(self) -> None:
        self.seconds, self.images = 0.0, 0

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def floor_order(j: int) -> tuple[list[str], list[str]]:
    """Pair ``j``'s (from 0) order of the floors and camlib, and of the two floors."""
    order = ["floor", "camlib"] if j % 2 == 0 else ["camlib", "floor"]
    floors = ["random", "masked"] if j % 4 in (0, 1) else ["masked", "random"]
    return order, floors


def passes(model, chunk: torch.Tensor, count: int) -> float:
    """Seconds for ``count`` images forwarded in chunks like ``chunk``, under no_grad."""
    bs = chunk.shape[0]
    start = time.perf_counter()
    with torch.no_grad():
        for first in range(0, count, bs):
            model(chunk[: min(bs, count - first)])
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=perturbation.default_score_batch("cpu"))
    parser.add_argument("--layout", choices=sorted(LAYOUTS), default=None,
                        help="the floors' layout (default: the one camlib's trial chose)")
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(2, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        top1 = model(x).argmax(1)
    bs = args.batch_size
    forwards = x.shape[0] * model.fc.in_features  # B x K masked passes

    def ours():
        return camlib.explain(model, x, method="scorecam", layers="layer4", classes=top1,
                              batch_size=bs)

    clock = ForwardClock(model, keep_batch=bs)
    ours()  # the layout trial runs here, then its choice is remembered
    last = clock.kept
    if last is None:
        raise SystemExit(f"no forward pass of {bs} images in camlib's call: choose a batch size "
                         "no larger than the number of masked passes")
    chosen = ("channels-last" if last.is_contiguous(memory_format=torch.channels_last)
              and not last.is_contiguous() else "usual")
    args.layout = args.layout or chosen
    layout = LAYOUTS[args.layout]
    print(f"camlib chose the {chosen} layout; the floors run in the {args.layout} one")
    masked_chunk = last.contiguous(memory_format=layout)
    random_chunk = torch.randn(bs, 3, args.size, args.size).contiguous(memory_format=layout)
    zero_share = float((masked_chunk == 0).float().mean())
    pairs = []
    for j in range(args.pairs):
        order, names = floor_order(j)
        record: dict = {}
        for who in order:
            if who == "camlib":
                clock.reset()
                start = time.perf_counter()
                ours()
                record["camlib"] = time.perf_counter() - start
                record["camlib in forwards"] = clock.seconds
                record["camlib images"] = clock.images
            else:
                clock.remove()
                floors = {"random": random_chunk, "masked": masked_chunk}
                for name in names:
                    record[f"floor {name}"] = passes(model, floors[name], forwards)
                record["floor order"] = names
                clock = ForwardClock(model, keep_batch=-1)
        record["floor camlib's count"] = (record["floor random"] * record["camlib images"]
                                          / forwards)
        record["camlib outside forwards"] = record["camlib"] - record["camlib in forwards"]
        pairs.append(record)
        shown = [f"floors ({', '.join(record['floor order'])})" if who == "floor" else who
                 for who in order]
        print(f"pair {j + 1} ({', '.join(shown)}): camlib {record['camlib']:.2f} s "
              f"({record['camlib in forwards']:.2f} in {record['camlib images']} images' "
              f"forward passes, {record['camlib outside forwards']:.2f} outside); floor "
              f"{record['floor random']:.2f} s random, {record['floor masked']:.2f} s masked",
              flush=True)
    clock.remove()
    ratio = {name: [p["camlib"] / p[name] for p in pairs]
             for name in ("floor random", "floor masked", "floor camlib's count")}
    ratio["camlib in forwards / floor random, scaled to camlib's count"] = [
        p["camlib in forwards"] / p["floor camlib's count"] for p in pairs]
    share = [p["camlib outside forwards"] / p["camlib"] for p in pairs]
    summary = {f"camlib / {name}, median": statistics.median(v) for name, v in ratio.items()
               if name.startswith("floor")}
    summary["camlib in forwards / floor (camlib's count), median"] = statistics.median(
        ratio["camlib in forwards / floor random, scaled to camlib's count"])
    summary["share of camlib's time outside forward passes, median"] = statistics.median(share)
    summary["masked / random floor, median"] = statistics.median(
        p["floor masked"] / p["floor random"] for p in pairs)
    for first in ("random", "masked"):
        picked = [p["floor masked"] / p["floor random"] for p in pairs
                  if p["floor order"][0] == first]
        if picked:
            summary[f"masked / random floor, median with {first} first"] = (
                statistics.median(picked))
    summary["zeros in the recorded masked chunk"] = zero_share
    print("\n".join(f"- {name}: {value:.3f}" for name, value in summary.items()))
    if args.json:
        meta = {"batch_size": bs, "layout": args.layout, "camlib_layout": chosen,
                "size": args.size, "forwards": forwards,
                "threads": torch.get_num_threads(), "versions": versions(),
                "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        args.json.write_text(json.dumps({"meta": meta, "pairs": pairs, "ratios": ratio,
                                         "summary": summary}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
