"""Maps and metrics over an image folder: ``python -m camlib.evaluate ROOT --out DIR``.

``ROOT`` is in ImageFolder layout (``ROOT/<class>/<image>``). Objects, optional, for the
pointing game and localisation, come as sidecars: ``--boxes FILE.json`` maps an image's
path relative to ROOT to a list of boxes ``[x0, y0, x1, y1]`` in its original pixels
(ends exclusive), and/or ``--masks DIR`` holds ``DIR/<class>/<image stem>.png``
(non-zero = object, the image's size). ``--model`` is ``efficientnet-lite0``, a
torchvision architecture, or ``module:callable``, any importable factory called with the
number of classes.

Images are letterboxed to ``--image-size`` (:class:`camlib.models.Preprocessing`; boxes
and masks follow) and normalised with ImageNet statistics. Results go to ``--out``: one
``chunk-NNNNN.jsonl`` per chunk of ``--chunk-size`` images (one line per image), written
when the chunk is complete, so an interrupted run resumes where it stopped; then
``results.csv`` (every image) and ``summary.json`` (means per method).

A file that cannot be read or decoded is skipped: it is recorded at once, with its path
and the reason, in ``skipped-NNNNN.jsonl`` beside its chunk, gathered into
``skipped.csv`` and counted in the summary and the progress bar. A resumed run never
reads it again (to retry, delete its chunk's two files). ``--strict`` stops at the first
such file instead (exit status 1). Every other bad argument or input stops the run with
one line on stderr, exit status 2.

Under ``torchrun`` (RANK / WORLD_SIZE set) each process takes every WORLD_SIZE-th chunk
(gloo on the CPU, NCCL on GPUs, one GPU per process); rank 0 merges after a barrier::

    torchrun --standalone --nproc_per_node 8 -m camlib.evaluate /data/val --out results/
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from . import metrics
from .evaluate_inputs import (
    ObjectFolder,
    UsageError,
    build_model,
    check_layer,
    collate,
    one_line,
)
from .explain import explain
from .methods import METHODS
from .models import LITE_MEAN, LITE_STD, Preprocessing

METRICS = ("deletion", "insertion", "confidence", "pointing", "localisation", "road")
DEFAULT_METRICS = METRICS[
    :-1
]  # ROAD's imputation costs a linear solve per perturbed image
PROG = "python -m camlib.evaluate"


# --- one batch ------------------------------------------------------------------------


def evaluate_batch(
    model: nn.Module, batch: dict[str, Tensor], args: argparse.Namespace
) -> list[dict]:
    """Every method's maps for one batch and every asked metric, one record per
    image."""
    images = batch["image"]
    pairs = zip(batch["index"].tolist(), batch["label"].tolist(), strict=True)
    records = [{"index": index, "label": label} for index, label in pairs]
    target = batch["label"] if args.target == "label" else None
    has_object = batch["mask"].flatten(1).any(1)
    for method in args.methods:
        try:
            exp = explain(
                model, images, method=method, layers=args.layer, classes=target
            )
        except (
            TypeError,
            ValueError,
        ) as error:  # the model, layer or target do not fit
            raise UsageError(f"--methods {method}: {error}") from None
        maps, classes = exp.maps[:, 0], exp.classes[:, 0]
        values: dict[str, Tensor] = {"class": classes, "prob": exp.probabilities[:, 0]}
        for mode in ("deletion", "insertion"):
            if mode in args.metrics:
                curve = metrics.perturbation_curve(
                    model,
                    images,
                    maps,
                    classes,
                    mode=mode,
                    steps=args.steps,
                    baseline=args.baseline,
                    max_batch=args.max_batch,
                )
                values[f"{mode}_auc"] = curve.auc
        if "confidence" in args.metrics:
            change = metrics.confidence_change(
                model, images, maps, classes, max_batch=args.max_batch
            )
            values["drop"], values["increase"] = change.drop, change.increase.float()
        if "road" in args.metrics:  # mean P_c over removing 10%, ..., 90%
            for order in ("morf", "lerf"):
                curve = metrics.road(
                    model, images, maps, classes, order=order, max_batch=args.max_batch
                )
                values[f"road_{order}"] = curve.scores.mean(dim=1)
        nothing = torch.full((images.shape[0],), math.nan, device=images.device)
        if "pointing" in args.metrics:  # NaN for images without an object
            values["pointing"] = nothing.clone()
            if bool(has_object.any()):
                values["pointing"][has_object] = metrics.pointing_game(
                    maps[has_object],
                    batch["mask"][has_object],
                    args.tolerance,
                    batch["pixel_size"][has_object],
                ).float()
        if "localisation" in args.metrics:
            values["iou"] = (
                nothing
                if not bool(has_object.any())
                else best_iou(
                    metrics.map_boxes(maps, args.ratio, tuple(maps.shape[-2:])),
                    batch["boxes"],
                )
            )
        for key, value in values.items():
            for record, item in zip(records, value.tolist(), strict=True):
                record[f"{method}/{key}"] = item
    return records


def best_iou(predicted: Tensor, boxes: Tensor) -> Tensor:
    """Largest IoU [B] of each predicted box [B, 4] with the image's boxes [B, N, 4]
    (NaN rows: none); NaN for images without boxes."""
    known = ~boxes.isnan().any(-1)
    top_left = torch.maximum(predicted[:, None, :2], boxes[..., :2])
    bottom_right = torch.minimum(predicted[:, None, 2:], boxes[..., 2:])
    overlap = (bottom_right - top_left).clamp_min(0).prod(-1)
    areas = (predicted[:, 2:] - predicted[:, :2]).prod(-1)[:, None] + (
        boxes[..., 2:] - boxes[..., :2]
    ).prod(-1)
    iou = (overlap / (areas - overlap)).masked_fill(~known, -1).amax(dim=1)
    return iou.masked_fill(~known.any(1), math.nan)


# --- chunks on disk -------------------------------------------------------------------


def chunk_path(out: Path, chunk: int) -> Path:
    return out / f"chunk-{chunk:05d}.jsonl"


def skipped_path(out: Path, chunk: int) -> Path:
    return out / f"skipped-{chunk:05d}.jsonl"


def read_skipped(out: Path, chunk: int) -> dict[int, dict]:
    """The chunk's skipped files by index (a line cut short by a crash is ignored)."""
    found = {}
    if skipped_path(out, chunk).exists():
        for line in skipped_path(out, chunk).read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            found[entry["index"]] = entry
    return found


def record_skipped(out: Path, chunk: int, index: int, path: str, reason: str) -> None:
    with open(skipped_path(out, chunk), "a") as handle:
        handle.write(
            json.dumps({"index": index, "path": path, "reason": reason}) + "\n"
        )


def write_chunk(
    out: Path, chunk: int, records: list[dict], dataset: ObjectFolder
) -> None:
    for record in records:
        record["path"] = dataset.relative(record["index"])
    temporary = chunk_path(out, chunk).with_suffix(".tmp")
    temporary.write_text("".join(json.dumps(record) + "\n" for record in records))
    # atomic: a chunk on disk is a finished chunk
    temporary.replace(chunk_path(out, chunk))


# --- a run ----------------------------------------------------------------------------


def run_rank(
    args: argparse.Namespace,
    rank: int,
    world: int,
    model: nn.Module,
    data: ObjectFolder,
) -> None:
    """This rank's share: chunks ``rank, rank + world, ...`` that are not on disk
    yet, less the files already recorded as skipped."""
    from tqdm.auto import tqdm

    device = args.device  # where run() put the model
    count = min(len(data), args.limit) if args.limit else len(data)
    batches, owner = [], []
    for chunk in range(rank, math.ceil(count / args.chunk_size), world):
        if chunk_path(args.out, chunk).exists():
            continue
        known = read_skipped(args.out, chunk)  # never read again
        stop = min((chunk + 1) * args.chunk_size, count)
        for start in range(chunk * args.chunk_size, stop, args.batch_size):
            # batches as in a fresh run, less the skipped files: the same numbers
            todo = [
                i
                for i in range(start, min(start + args.batch_size, stop))
                if i not in known
            ]
            if todo:
                batches.append(todo)
                owner.append(chunk)
        if chunk not in owner:  # every file in it already skipped
            write_chunk(args.out, chunk, [], data)
    loader = DataLoader(
        data,
        batch_sampler=batches,
        num_workers=args.workers,
        collate_fn=collate,
        pin_memory=device.type == "cuda",
    )
    pending: list[dict] = []
    skipped = 0
    bar = tqdm(
        total=sum(map(len, batches)),
        unit="image",
        desc=f"rank {rank}",
        disable=rank != 0 or not sys.stderr.isatty(),
    )
    bar.set_postfix(skipped=skipped)
    for number, item in enumerate(loader):
        for index, kind, text in item["problems"]:
            if kind == "error":
                raise UsageError(text)
            if args.strict:
                raise UsageError(
                    f"{data.samples[index][0]}: expected an image that can be "
                    f"read and decoded, got {text} (--strict stops at the first such "
                    "file)",
                    status=1,
                )
            record_skipped(args.out, owner[number], index, data.relative(index), text)
            skipped += 1
            bar.set_postfix(skipped=skipped)
        if item["batch"] is not None:
            batch = {key: value.to(device) for key, value in item["batch"].items()}
            pending += evaluate_batch(model, batch, args)
        bar.update(len(batches[number]))
        if number + 1 == len(batches) or owner[number + 1] != owner[number]:
            write_chunk(args.out, owner[number], pending, data)
            pending = []
    bar.close()


def merge(out: Path, chunks: int) -> dict:
    """Join the chunk files into ``results.csv``, ``skipped.csv`` and
    ``summary.json`` (means per column; NaN entries, images without objects, left
    out; ``gt_known`` = share of IoU >= 0.5; ``skipped``: files that could not be
    read)."""
    missing = [c for c in range(chunks) if not chunk_path(out, c).exists()]
    if missing:
        raise RuntimeError(
            f"chunks {missing} are missing in {out}; run again to finish them"
        )
    records = [
        json.loads(line)
        for c in range(chunks)
        for line in chunk_path(out, c).read_text().splitlines()
    ]
    records.sort(key=lambda record: record["index"])
    columns = list(dict.fromkeys(key for record in records for key in record))
    with open(out / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows(records)
    skipped = sorted(
        (entry for c in range(chunks) for entry in read_skipped(out, c).values()),
        key=lambda entry: entry["index"],
    )
    with open(out / "skipped.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["index", "path", "reason"])
        writer.writeheader()
        writer.writerows(skipped)
    summary: dict = {"images": len(records), "skipped": len(skipped)}
    for column in columns:
        if "/" not in column or column.endswith("/class"):
            continue
        values = torch.tensor(
            [r.get(column, math.nan) for r in records], dtype=torch.float64
        )
        values = values[~values.isnan()]
        method, name = column.split("/")
        entry = summary.setdefault(method, {})
        entry[name] = values.mean().item() if values.numel() else math.nan
        if name == "iou":
            entry["gt_known"] = (
                (values >= 0.5).double().mean().item() if values.numel() else math.nan
            )
        if name in ("pointing", "iou"):
            entry[f"{name}_images"] = values.numel()
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


# --- the command line -----------------------------------------------------------------


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage block
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = Parser(prog=PROG, description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("root", type=Path, help="image folder in ImageFolder layout")
    add("--out", type=Path, required=True, help="results folder (resumes if it exists)")
    add("--boxes", help="JSON: relative image path -> [[x0, y0, x1, y1], ...]")
    add("--masks", help="folder of PNG masks mirroring the images")
    add(
        "--model",
        default="efficientnet-lite0",
        help="efficientnet-lite0 (pretrained), a torchvision architecture, or "
        "module:callable (a factory called with the number of classes, e.g. "
        "mypackage.nets:Net)",
    )
    add("--weights", help="a state dict to load into the model")
    add("--num-classes", type=int, help="random models (default: the folder's classes)")
    add("--seed", type=int, default=0, help="initialises random models")
    add("--methods", nargs="+", default=["cam", "gradcam"])
    add("--layer", help="the layer to explain (default: the last feature map)")
    add("--metrics", nargs="+", default=list(DEFAULT_METRICS), choices=METRICS)
    add(
        "--target",
        choices=("predicted", "label"),
        default="predicted",
        help="which class to explain (label: folder index = model class index)",
    )
    add("--image-size", type=int, default=224)
    add("--batch-size", type=int, default=32)
    add("--max-batch", type=int, default=256, help="images per forward in the curves")
    add("--chunk-size", type=int, default=256, help="images per result file")
    add("--workers", type=int, default=2)
    add("--steps", type=int, default=50, help="deletion / insertion steps")
    add("--baseline", choices=metrics.BASELINES, default="zero")
    add("--tolerance", type=float, default=15.0, help="pointing game, original pixels")
    add("--ratio", type=float, default=0.2, help="Zhou box threshold")
    add("--limit", type=int, help="only the first N images")
    add(
        "--strict",
        action="store_true",
        help="stop at the first file that cannot be read (default: skip and record it)",
    )
    add("--device", help="cpu or cuda (default: cuda if available)")
    args = parser.parse_args(argv)
    positive = ("batch_size", "chunk_size", "max_batch", "steps", "image_size")
    for name in (*positive, "num_classes", "limit"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(
                f"--{name.replace('_', '-')}: expected a positive number, got {value}"
            )
    if args.workers < 0:
        parser.error(f"--workers: expected 0 or more, got {args.workers}")
    unknown = [method for method in args.methods if method not in METHODS]
    if unknown:
        parser.error(f"--methods: expected names from {list(METHODS)}, got {unknown}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return 0 (the ``camlib-evaluate`` script exits with it); a
    ``UsageError`` becomes one line on stderr and ``SystemExit`` with its
    status."""
    args = parse(argv)
    try:
        run(args)
        return 0
    except UsageError as error:
        sys.stderr.write(f"{PROG}: error: {error}\n")
        raise SystemExit(error.status) from None


def pick_device(name: str | None) -> torch.device:
    """``--device``, default cuda if there is one; a device this machine lacks is
    refused."""
    try:
        device = torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))
    except RuntimeError:
        raise UsageError(f"--device: expected cpu or cuda, got {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: expected a device here, got no CUDA device")
    if device.type not in ("cpu", "cuda"):
        raise UsageError(f"--device: expected cpu or cuda, got {name!r}")
    return device


def run(args: argparse.Namespace) -> dict | None:
    import torch.distributed as dist

    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    device = pick_device(args.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    args.device = device
    prep = Preprocessing(size=args.image_size)  # ImageNet statistics
    if args.model == "efficientnet-lite0":
        prep = Preprocessing(size=args.image_size, mean=LITE_MEAN, std=LITE_STD)
    dataset = ObjectFolder(args.root, args.image_size, args.boxes, args.masks, prep)
    classes = args.num_classes or len(dataset.classes)
    model = build_model(args.model, classes, args.seed, args.weights).to(device)
    check_layer(model, args.layer)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(
            f"--out {args.out}: expected a folder, got {one_line(error)}"
        ) from None
    if world > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        run_rank(args, rank, world, model, dataset)
        if world > 1:
            dist.barrier()
        if rank == 0:
            count = min(len(dataset), args.limit) if args.limit else len(dataset)
            summary = merge(args.out, math.ceil(count / args.chunk_size))
            print(json.dumps(summary, indent=1))
            return summary
        return None
    finally:
        if world > 1:
            dist.destroy_process_group()


if __name__ == "__main__":
    raise SystemExit(main())
