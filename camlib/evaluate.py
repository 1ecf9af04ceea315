"""Maps and metrics over an image folder, at scale: ``python -m camlib.evaluate ROOT --out DIR``.

``ROOT`` is in ImageFolder layout (``ROOT/<class>/<image>``). Objects, optional, for the
pointing game and localisation, come as sidecars: ``--boxes FILE.json`` maps an image's path
relative to ROOT to a list of boxes ``[x0, y0, x1, y1]`` in its original pixels (ends
exclusive), and/or ``--masks DIR`` holds ``DIR/<class>/<image stem>.png`` (non-zero = object).

Images are resized whole to ``--image-size`` (no crop) and normalised with ImageNet statistics.
Results go to ``--out``: one ``chunk-NNNNN.jsonl`` per chunk of ``--chunk-size`` images (one
line per image), written when the chunk is complete, so an interrupted run resumes where it
stopped; then ``results.csv`` (every image) and ``summary.json`` (means per method).

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
from torch.utils.data import DataLoader, Dataset

from . import metrics
from .explain import explain
from .models import LITE_MEAN, LITE_STD, Preprocessing
from .postprocess import mask_to_box

METRICS = ("deletion", "insertion", "confidence", "pointing", "localisation", "road")
DEFAULT_METRICS = METRICS[:-1]  # ROAD's imputation costs a linear solve per perturbed image
MAX_BOXES = 16


class ObjectFolder(Dataset):
    """An ImageFolder, resized and normalised, with each image's object (if known) as a mask and
    up to 16 boxes at the resized resolution (NaN rows pad the boxes)."""

    def __init__(
        self, root: str, size: int, boxes: str | None = None, masks: str | None = None,
        preprocessing: Preprocessing | None = None,
    ) -> None:
        from torchvision.datasets import ImageFolder

        self.root = Path(root)
        folder = ImageFolder(root)
        self.samples, self.classes = folder.samples, folder.classes
        self.preprocessing = preprocessing or Preprocessing(size=size)
        self.boxes = json.loads(Path(boxes).read_text()) if boxes else {}
        self.masks = Path(masks) if masks else None

    def __len__(self) -> int:
        return len(self.samples)

    def relative(self, index: int) -> str:
        return Path(self.samples[index][0]).relative_to(self.root).as_posix()

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        from PIL import Image
        from torchvision.transforms.functional import pil_to_tensor

        path, label = self.samples[index]
        with Image.open(path) as opened:
            pixels = pil_to_tensor(opened.convert("RGB")).float()[None] / 255
        height, width = pixels.shape[-2:]
        size = self.preprocessing.size
        scale = torch.tensor([size / width, size / height] * 2)
        boxes = torch.full((MAX_BOXES, 4), math.nan)
        mask = torch.zeros(size, size, dtype=torch.bool)
        known = self.boxes.get(self.relative(index), [])
        if known:
            given = torch.tensor(known, dtype=torch.float32).view(-1, 4)[:MAX_BOXES] * scale
            boxes[: given.shape[0]] = given
            mask |= metrics.boxes_to_masks(given[None], (size, size))[0]
        mask_file = (
            self.masks / Path(self.relative(index)).with_suffix(".png") if self.masks else None
        )
        if mask_file is not None and mask_file.exists():
            with Image.open(mask_file) as opened:
                drawn = pil_to_tensor(opened.convert("L")).float()[None]
            drawn = (
                torch.nn.functional.interpolate(drawn, size=(size, size), mode="nearest")[0, 0] > 0
            )
            mask |= drawn
            if not known:
                boxes[0] = mask_to_box(drawn).float()
        image = self.preprocessing.normalize(self.preprocessing.resize(pixels))[0]
        return {
            "image": image,
            "label": label,
            "index": index,
            "mask": mask,
            "boxes": boxes,
            "pixel_size": 1 / scale[:2],
        }


def build_model(name: str, num_classes: int, seed: int, weights: str | None = None) -> nn.Module:
    """``efficientnet-lite0`` (ImageNet weights, offline), ``MODULE:CALLABLE`` (any importable
    factory called with ``num_classes``, e.g. your own model) or any torchvision architecture
    name, randomly initialised from ``seed``; ``weights`` loads a state dict on top."""
    torch.manual_seed(seed)
    if name == "efficientnet-lite0":
        from .models import efficientnet_lite0

        model = efficientnet_lite0(pretrained=weights is None)
    elif ":" in name:
        import importlib

        module, _, attribute = name.partition(":")
        model = getattr(importlib.import_module(module), attribute)(num_classes)
    else:
        import torchvision

        model = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
    if weights:
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model.eval()


def evaluate_batch(
    model: nn.Module, batch: dict[str, Tensor], args: argparse.Namespace
) -> list[dict]:
    """Every method's maps for one batch and every asked metric, one record per image."""
    images = batch["image"]
    pairs = zip(batch["index"].tolist(), batch["label"].tolist(), strict=True)
    records = [{"index": index, "label": label} for index, label in pairs]
    target = batch["label"] if args.target == "label" else None
    has_object = batch["mask"].flatten(1).any(1)
    for method in args.methods:
        exp = explain(model, images, method=method, layers=args.layer, classes=target)
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
        if "road" in args.metrics:  # mean P_c over removing 10%, ..., 90%, each batch seeded alike
            for order in ("morf", "lerf"):
                curve = metrics.road(
                    model, images, maps, classes, order=order, max_batch=args.max_batch
                )
                values[f"road_{order}"] = curve.scores.mean(dim=1)
        if "pointing" in args.metrics and bool(has_object.any()):
            hits = torch.full((images.shape[0],), math.nan, device=images.device)
            hits[has_object] = metrics.pointing_game(
                maps[has_object],
                batch["mask"][has_object],
                args.tolerance,
                batch["pixel_size"][has_object],
            ).float()
            values["pointing"] = hits
        if "localisation" in args.metrics and bool(has_object.any()):
            values["iou"] = best_iou(
                metrics.map_boxes(maps, args.ratio, tuple(maps.shape[-2:])), batch["boxes"]
            )
        for key, value in values.items():
            for record, item in zip(records, value.tolist(), strict=True):
                record[f"{method}/{key}"] = item
    return records


def best_iou(predicted: Tensor, boxes: Tensor) -> Tensor:
    """Largest IoU [B] of each predicted box [B, 4] with the image's boxes [B, N, 4] (NaN rows:
    none); NaN for images without boxes."""
    known = ~boxes.isnan().any(-1)
    top_left = torch.maximum(predicted[:, None, :2], boxes[..., :2])
    bottom_right = torch.minimum(predicted[:, None, 2:], boxes[..., 2:])
    overlap = (bottom_right - top_left).clamp_min(0).prod(-1)
    areas = (predicted[:, 2:] - predicted[:, :2]).prod(-1)[:, None] + (
        boxes[..., 2:] - boxes[..., :2]
    ).prod(-1)
    iou = (overlap / (areas - overlap)).masked_fill(~known, -1).amax(dim=1)
    return iou.masked_fill(~known.any(1), math.nan)


def chunk_path(out: Path, chunk: int) -> Path:
    return out / f"chunk-{chunk:05d}.jsonl"


def run_rank(args: argparse.Namespace, rank: int, world: int, device: torch.device) -> None:
    """This rank's share: chunks ``rank, rank + world, ...`` that are not on disk yet."""
    from tqdm.auto import tqdm

    prep = Preprocessing(size=args.image_size)  # ImageNet statistics
    if args.model == "efficientnet-lite0":
        prep = Preprocessing(size=args.image_size, mean=LITE_MEAN, std=LITE_STD)
    dataset = ObjectFolder(args.root, args.image_size, args.boxes, args.masks, prep)
    count = min(len(dataset), args.limit) if args.limit else len(dataset)
    chunks = [
        c
        for c in range(rank, math.ceil(count / args.chunk_size), world)
        if not chunk_path(args.out, c).exists()
    ]
    batches, owner = [], []
    for chunk in chunks:
        stop = min((chunk + 1) * args.chunk_size, count)
        for start in range(chunk * args.chunk_size, stop, args.batch_size):
            batches.append(list(range(start, min(start + args.batch_size, stop))))
            owner.append(chunk)
    model = build_model(
        args.model, args.num_classes or len(dataset.classes), args.seed, args.weights
    ).to(device)
    loader = DataLoader(
        dataset, batch_sampler=batches, num_workers=args.workers, pin_memory=device.type == "cuda"
    )
    pending: list[dict] = []
    bar = tqdm(
        total=len(batches), desc=f"rank {rank}", disable=rank != 0 or not sys.stderr.isatty()
    )
    for number, batch in enumerate(loader):
        batch = {key: value.to(device) for key, value in batch.items()}
        pending += evaluate_batch(model, batch, args)
        bar.update(1)
        if number + 1 == len(batches) or owner[number + 1] != owner[number]:
            write_chunk(args.out, owner[number], pending, dataset)
            pending = []
    bar.close()


def write_chunk(out: Path, chunk: int, records: list[dict], dataset: ObjectFolder) -> None:
    for record in records:
        record["path"] = dataset.relative(record["index"])
    temporary = chunk_path(out, chunk).with_suffix(".tmp")
    temporary.write_text("".join(json.dumps(record) + "\n" for record in records))
    temporary.replace(chunk_path(out, chunk))  # atomic: a chunk on disk is a finished chunk


def merge(out: Path, chunks: int) -> dict:
    """Join the chunk files into ``results.csv`` and ``summary.json`` (means per column; NaN
    entries, images without objects, left out; ``gt_known`` = share of IoU >= 0.5)."""
    missing = [c for c in range(chunks) if not chunk_path(out, c).exists()]
    if missing:
        raise RuntimeError(f"chunks {missing} are missing in {out}; run again to finish them")
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
    summary: dict = {"images": len(records)}
    for column in columns:
        if "/" not in column or column.endswith("/class"):
            continue
        values = torch.tensor([r.get(column, math.nan) for r in records], dtype=torch.float64)
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


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m camlib.evaluate", description=__doc__.splitlines()[0]
    )
    parser.add_argument("root", help="image folder in ImageFolder layout")
    parser.add_argument(
        "--out", type=Path, required=True, help="results folder (resumes if it exists)"
    )
    parser.add_argument("--boxes", help="JSON: relative image path -> [[x0, y0, x1, y1], ...]")
    parser.add_argument("--masks", help="folder of PNG masks mirroring the images")
    parser.add_argument(
        "--model",
        default="efficientnet-lite0",
        help="efficientnet-lite0 (pretrained), a torchvision architecture, or MODULE:CALLABLE",
    )
    parser.add_argument("--weights", help="a state dict to load into the model")
    parser.add_argument(
        "--num-classes", type=int, help="for random models (default: the folder's classes)"
    )
    parser.add_argument("--seed", type=int, default=0, help="initialises random models")
    parser.add_argument("--methods", nargs="+", default=["cam", "gradcam"])
    parser.add_argument("--layer", help="the layer to explain (default: the last feature map)")
    parser.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRICS), choices=METRICS)
    parser.add_argument(
        "--target",
        choices=("predicted", "label"),
        default="predicted",
        help="which class to explain (label: folder index = model class index)",
    )
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--max-batch", type=int, default=256, help="images per forward in the curves"
    )
    parser.add_argument("--chunk-size", type=int, default=256, help="images per result file")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=50, help="deletion / insertion steps")
    parser.add_argument("--baseline", choices=metrics.BASELINES, default="zero")
    parser.add_argument(
        "--tolerance", type=float, default=15.0, help="pointing game, original pixels"
    )
    parser.add_argument("--ratio", type=float, default=0.2, help="Zhou box threshold")
    parser.add_argument("--limit", type=int, help="only the first N images")
    parser.add_argument("--device", help="cpu or cuda (default: cuda if available)")
    args = parser.parse_args(argv)
    for name in ("batch_size", "chunk_size", "max_batch", "steps", "image_size"):
        if getattr(args, name) < 1:
            parser.error(
                f"--{name.replace('_', '-')}: expected a positive number, got {getattr(args, name)}"
            )
    return args


def main(argv: Sequence[str] | None = None) -> dict | None:
    import torch.distributed as dist

    args = parse(argv)
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    if world > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        run_rank(args, rank, world, device)
        if world > 1:
            dist.barrier()
        if rank == 0:
            size = len(ObjectFolder(args.root, args.image_size).samples)
            count = min(size, args.limit) if args.limit else size
            summary = merge(args.out, math.ceil(count / args.chunk_size))
            print(json.dumps(summary, indent=1))
            return summary
        return None
    finally:
        if world > 1:
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
