"""CAM-enhanced classification: use the map to decide where to look closer, and measure the gain.

Pieces (each usable alone): crop windows in full-resolution coordinates (from CAM boxes, CAM
peaks, the centre, random places, or the true box as an oracle), batched crops, a small CAM-ready
classifier, its training loop (optionally with CAM-guided crops and drops, after WS-DAN), and
weakly supervised localisation metrics. :func:`run_experiment` runs everything from scratch for
one seed; ``python -m camlib.enhance --seed 0 1 2 --json results.json`` runs it from the shell.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import box_iou, roi_align

from . import data
from .explain import explain
from .postprocess import mask_to_box, threshold_mask, to_image_maps, zhou_boxes

# --- windows and crops ---------------------------------------------------------------------------


def check_boxes(boxes: Tensor, image_size: tuple[int, int], batch: int | None = None) -> Tensor:
    """Boxes ``[N, 4]`` (x0, y0, x1, y1), non-empty and inside an image of ``(H, W)``."""
    if not isinstance(boxes, Tensor) or boxes.ndim != 2 or boxes.shape[1] != 4:
        got = tuple(boxes.shape) if isinstance(boxes, Tensor) else type(boxes).__name__
        raise ValueError(f"boxes: expected a tensor [N, 4] of (x0, y0, x1, y1), got {got}")
    if batch is not None and boxes.shape[0] != batch:
        raise ValueError(f"boxes: expected one box per image ({batch}), got {boxes.shape[0]}")
    height, width = image_size
    empty = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
    if bool(empty.any()):
        raise ValueError(f"boxes: expected x1 > x0 and y1 > y0, got empty boxes at rows {empty.nonzero().flatten().tolist()}")
    outside = (boxes[:, :2] < 0).any(1) | (boxes[:, 2] > width) | (boxes[:, 3] > height)
    if bool(outside.any()):
        rows = outside.nonzero().flatten().tolist()
        raise ValueError(f"boxes: expected boxes inside the {width}x{height} image, got {boxes[rows].tolist()} at rows {rows}")
    return boxes


def crop(images: Tensor, boxes: Tensor, size: int) -> Tensor:
    """Cut ``boxes`` (full-resolution pixels, ends exclusive) out of ``images`` [N, C, H, W] and
    resize each to ``size`` x ``size``. Each output pixel averages about one bilinear sample per
    input pixel it covers (at pixel centres), so a crop at scale 1 is an exact copy and shrinking
    is anti-aliased."""
    if not isinstance(images, Tensor) or images.ndim != 4 or not images.is_floating_point():
        got = f"{tuple(images.shape)} {images.dtype}" if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images: expected a float tensor [N, C, H, W], got {got}")
    check_boxes(boxes, tuple(images.shape[-2:]), images.shape[0])
    index = torch.arange(boxes.shape[0], device=boxes.device, dtype=images.dtype)[:, None]
    rois = torch.cat([index, boxes.to(images.dtype)], dim=1)
    return roi_align(images, rois, output_size=(size, size), spatial_scale=1.0, sampling_ratio=-1, aligned=True)


def square_windows(boxes: Tensor, image_size: int | tuple[int, int], margin: float = 1.25, min_side: float = 24.0,
                   side: Tensor | None = None) -> Tensor:
    """Square windows centred on ``boxes``, ``margin`` times their longer side (or ``side``),
    at least ``min_side``, shifted (never shrunk) to lie inside an image of ``image_size``
    (an int for square images, or ``(height, width)``)."""
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    boxes = boxes.float()
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    if side is None:
        side = (boxes[:, 2:] - boxes[:, :2]).amax(dim=1) * margin
    side = side.float().clamp(min_side, min(height, width))
    limit = torch.tensor([width, height], dtype=side.dtype, device=side.device) - side[:, None]
    start = torch.minimum((centre - side[:, None] / 2).clamp(min=0), limit)
    return torch.cat([start, start + side[:, None]], dim=1)


def centred_windows(side: Tensor, image_size: int) -> Tensor:
    """Windows of the given sides at the image centre (the "just zoom in" control)."""
    centre = torch.full((side.shape[0], 2), image_size / 2, device=side.device)
    return square_windows(torch.cat([centre, centre], 1), image_size, side=side, min_side=1)


def random_windows(side: Tensor, image_size: int, generator: torch.Generator) -> Tensor:
    """Windows of the given sides at uniformly random places inside the image."""
    start = torch.rand((side.shape[0], 2), generator=generator).to(side.device) * (image_size - side[:, None])
    return torch.cat([start, start + side[:, None]], dim=1)


def peak_windows(maps: Tensor, side: float) -> Tensor:
    """Fixed-size windows centred on each map's maximum; ``maps`` [N, H, W]."""
    height, width = maps.shape[-2:]
    flat = maps.flatten(1).argmax(dim=1)
    centre = torch.stack([flat % width, flat // width], dim=1).float() + 0.5
    sides = torch.full((maps.shape[0],), float(side), device=maps.device)
    return square_windows(torch.cat([centre, centre], 1), min(height, width), side=sides, min_side=1)


@dataclass(frozen=True)
class TwoStage:
    """Every intermediate of the two-stage pipeline on a batch of full-resolution scenes."""

    views: Tensor  # the global views [N, 3, s, s]
    first: Tensor  # stage-1 probabilities [N, classes]
    maps: Tensor  # stage-1 CAM of its predicted class [N, m, m]
    windows: Tensor  # square crop windows in full-resolution pixels [N, 4]
    crops: Tensor  # what stage 2 sees [N, 3, input, input]
    second: Tensor  # stage-2 probabilities [N, classes]


def two_stage(stage1: nn.Module, stage2: nn.Module, images: Tensor, config: "Config") -> TwoStage:
    """Look (stage 1 on the global view), find (CAM, Zhou box), zoom (crop the full-resolution
    scene), classify again (stage 2)."""
    views = global_view(images, config)
    first = probabilities(stage1, views)
    windows, maps = cam_windows(stage1, views, first.argmax(1), config)
    crops = crop(images, windows, config.input_size)
    return TwoStage(views, first, maps, windows, crops, probabilities(stage2, crops))


# --- the classifier ------------------------------------------------------------------------------


class SmallCNN(nn.Module):
    """Four 3x3 convolutions, global average pooling, one linear layer: CAM applies as is."""

    def __init__(self, num_classes: int, widths: Sequence[int] = (16, 24, 32, 32)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for index, width in enumerate(widths):
            stride = 2 if index == 1 else 1
            layers += [nn.Conv2d(channels, width, 3, stride=stride, padding=1, bias=False),
                       nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            channels = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, images: Tensor) -> Tensor:
        return self.fc(self.pool(self.features(images)).flatten(1))


@dataclass(frozen=True)
class Config:
    """Everything that defines one run; the defaults fit the chapter's time budget on 2 cores."""

    seed: int = 0
    n_train: int = 4000
    n_validation: int = 500  # for choosing the localisation threshold, as Choe et al. advise
    n_test: int = 1000
    image_size: int = 128
    factor: int = 4  # the global view is image_size / factor pixels wide
    input_size: int = 32  # what every classifier sees
    widths: tuple[int, ...] = (16, 24, 32, 32)
    epochs: int = 6
    batch_size: int = 128
    learning_rate: float = 3e-3
    ratio: float = 0.2  # Zhou et al.'s threshold
    map_size: int = 64  # maps are thresholded at this resolution (half the image's: 4x cheaper)
    training_map_size: int = 32  # the same, for the crops made at every training step
    margin: float = 1.25
    min_side: float = 24.0
    attention_ratio: float = 0.5  # the single network crops around map > this (WS-DAN uses 0.4-0.6)
    drop_ratio: float = 0.5  # CAM-guided dropping erases the global view where the map exceeds this
    thresholds: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(1, 10))


def global_view(images: Tensor, config: Config) -> Tensor:
    """What the first-stage classifier sees: the whole scene at 1/factor resolution."""
    return data.downsample(images, config.factor)


def cam_maps(model: nn.Module, views: Tensor, classes: Tensor, size: int) -> Tensor:
    """CAM of ``classes`` [N] on the low-resolution ``views``, as [N, size, size] maps."""
    exp = explain(model, views, method="cam", classes=classes)
    return to_image_maps(exp.raw["features"], (size, size))[:, 0]


def map_boxes(maps: Tensor, ratio: float, image_size: int) -> Tensor:
    """Zhou boxes of [N, s, s] maps, in full-resolution pixels of an ``image_size`` image."""
    return zhou_boxes(maps, ratio).float() * (image_size / maps.shape[-1])


def cam_windows(model: nn.Module, views: Tensor, classes: Tensor, config: Config,
                map_size: int | None = None) -> tuple[Tensor, Tensor]:
    """(square windows [N, 4] in full-resolution pixels, maps [N, s, s]) from the CAM of
    ``classes`` on the low-resolution ``views``: Zhou box, enlarged by the margin."""
    maps = cam_maps(model, views, classes, map_size or config.map_size)
    boxes = map_boxes(maps, config.ratio, config.image_size)
    return square_windows(boxes, config.image_size, config.margin, config.min_side), maps


def train_classifier(model: nn.Module, images: Tensor, labels: Tensor, config: Config,
                     extra_views: Callable[[nn.Module, Tensor, Tensor], list[Tensor]] | None = None,
                     progress: Callable[[int], None] | None = None) -> nn.Module:
    """AdamW with a one-cycle schedule on ``images`` (already classifier-sized).

    ``extra_views(model, batch_images, batch_labels)`` may return more inputs for the same labels
    (CAM crops, CAM drops), each adding its own cross-entropy term, as in WS-DAN.
    """
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"images and labels: expected the same count, got {images.shape[0]} and {labels.shape[0]}")
    generator = torch.Generator().manual_seed(config.seed)
    steps_per_epoch = math.ceil(images.shape[0] / config.batch_size)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, config.learning_rate,
                                                   total_steps=config.epochs * steps_per_epoch)
    model.train()
    for _ in range(config.epochs):
        order = torch.randperm(images.shape[0], generator=generator)
        for start in range(0, images.shape[0], config.batch_size):
            index = order[start : start + config.batch_size]
            batch, target = images[index], labels[index]
            views = [batch] + (extra_views(model, index, target) if extra_views else [])
            loss = sum(F.cross_entropy(model(view), target) for view in views)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
        if progress:
            progress(1)
    return model.eval()


@torch.no_grad()
def probabilities(model: nn.Module, inputs: Tensor, batch_size: int = 500) -> Tensor:
    model.eval()
    return torch.cat([model(inputs[i : i + batch_size]).softmax(1) for i in range(0, inputs.shape[0], batch_size)])


# --- localisation metrics ------------------------------------------------------------------------


def localisation(maps: Tensor, boxes: Tensor, masks: Tensor, correct: Tensor, ratio: float) -> dict[str, float]:
    """Weakly supervised localisation from maps [N, s, s] of the true class; ``boxes`` and
    ``masks`` [N, S, S] are at the full resolution S.

    gt_known: IoU(Zhou box, true box) >= 0.5; top1: that and a correct prediction;
    pointing: the map's maximum falls on the object.
    """
    size, image_size = maps.shape[-1], masks.shape[-1]
    predicted = map_boxes(maps, ratio, image_size)
    iou = box_iou(predicted, boxes.float()).diagonal()
    flat = maps.flatten(1).argmax(1)
    scale = image_size / size  # the centre of the peak cell, in full-resolution pixels
    peak_x = ((flat % size).float() + 0.5).mul(scale).long().clamp(max=image_size - 1)
    peak_y = ((flat // size).float() + 0.5).mul(scale).long().clamp(max=image_size - 1)
    pointing = masks[torch.arange(masks.shape[0]), peak_y, peak_x]
    hit = iou >= 0.5
    return {"gt_known": hit.float().mean().item(), "top1": (hit & correct).float().mean().item(),
            "pointing": pointing.float().mean().item(), "mean_iou": iou.mean().item()}


# --- the whole experiment ------------------------------------------------------------------------


@dataclass
class Experiment:
    """Results of one seed: accuracies per policy (crop alone and fused with the global view),
    localisation at Zhou's threshold and at the validated one, the threshold curve, timings."""

    config: Config
    accuracy: dict[str, dict[str, float]] = field(default_factory=dict)
    localisation: dict[str, dict[str, float]] = field(default_factory=dict)
    threshold_curve: list[dict[str, float]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    # trained models and test scenes, for figures; not part of the saved results
    artifacts: dict = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict:
        return {key: value for key, value in asdict(self).items() if key != "artifacts"}


def run_experiment(config: Config = Config(), progress: bool = False) -> Experiment:
    """Data, training and evaluation from scratch for ``config.seed``."""
    from tqdm.auto import tqdm

    torch.manual_seed(config.seed)
    result = Experiment(config)
    bar = tqdm(total=4 * config.epochs, desc=f"seed {config.seed}", disable=not progress)
    clock = time.perf_counter()
    total = config.n_train + config.n_validation + config.n_test
    scenes = data.make_scenes(total, seed=10_000 + config.seed, size=config.image_size)
    train, validation, test = (scenes[: config.n_train],
                               scenes[config.n_train : config.n_train + config.n_validation],
                               scenes[config.n_train + config.n_validation :])
    full = {"train": train.float_images(), "test": test.float_images(), "validation": validation.float_images()}
    views = {name: global_view(images, config) for name, images in full.items()}
    result.seconds["data"] = time.perf_counter() - clock

    # Stage 1: the global classifier, and its CAM windows (true class for training crops,
    # predicted class at test time: no box labels anywhere).
    clock = time.perf_counter()
    stage1 = train_classifier(SmallCNN(len(data.SCENE_CLASSES), config.widths), views["train"], train.labels,
                              config, progress=bar.update)
    train_windows, _ = cam_windows(stage1, views["train"], train.labels, config)
    result.seconds["stage 1"] = time.perf_counter() - clock

    # Stage 2: a close-up classifier trained on stage 1's CAM crops of the training scenes.
    clock = time.perf_counter()
    stage2 = train_classifier(SmallCNN(len(data.SCENE_CLASSES), config.widths),
                              crop(full["train"], train_windows, config.input_size), train.labels,
                              config, progress=bar.update)
    result.seconds["stage 2"] = time.perf_counter() - clock

    pipeline = two_stage(stage1, stage2, full["test"], config)
    p_global, test_windows, test_maps = pipeline.first, pipeline.windows, pipeline.maps
    predicted = p_global.argmax(1)
    sides = test_windows[:, 2] - test_windows[:, 0]
    generator = torch.Generator().manual_seed(config.seed)
    true_class_maps = cam_maps(stage1, views["test"], test.labels, config.map_size)
    policies = {
        "CAM box crop": test_windows,
        "CAM peak window": peak_windows(test_maps, float(sides.median()) * config.map_size / config.image_size)
        * (config.image_size / config.map_size),
        "centre crop (same size)": centred_windows(sides, config.image_size),
        "random crop (same size)": random_windows(sides, config.image_size, generator),
        "oracle crop (true box)": square_windows(test.boxes, config.image_size, config.margin, config.min_side),
    }
    labels = test.labels
    result.accuracy["global view (stage 1)"] = {"crop": float("nan"), "fused": _accuracy(p_global, labels)}
    for name, windows in policies.items():
        p_crop = probabilities(stage2, crop(full["test"], windows, config.input_size))
        result.accuracy[name] = {"crop": _accuracy(p_crop, labels), "fused": _accuracy((p_crop + p_global) / 2, labels)}

    # One network, attention-guided training (WS-DAN style), with and without CAM-guided dropping.
    for name, drop in (("single network: CAM crops", False), ("single network: CAM crops + drops", True)):
        clock = time.perf_counter()
        net = train_classifier(SmallCNN(len(data.SCENE_CLASSES), config.widths), views["train"], train.labels,
                               config, extra_views=_attention_views(full["train"], views["train"], config, drop),
                               progress=bar.update if not drop else None)
        p_whole = probabilities(net, views["test"])
        maps = cam_maps(net, views["test"], p_whole.argmax(1), config.training_map_size)
        p_zoom = probabilities(net, crop(full["test"], attention_windows(maps, config), config.input_size))
        result.accuracy[name] = {"crop": _accuracy(p_zoom, labels), "fused": _accuracy((p_zoom + p_whole) / 2, labels)}
        result.seconds[name] = time.perf_counter() - clock
    bar.update(config.epochs)

    # Weakly supervised localisation with stage 1's maps of the true class.
    correct = predicted == labels
    validation_maps = cam_maps(stage1, views["validation"], validation.labels, config.map_size)
    best_ratio, best = config.ratio, -1.0
    for ratio in config.thresholds:
        on_validation = localisation(validation_maps, validation.boxes, validation.masks,
                                     torch.ones(len(validation), dtype=torch.bool), ratio)["gt_known"]
        on_test = localisation(true_class_maps, test.boxes, test.masks, correct, ratio)
        result.threshold_curve.append({"ratio": ratio, "validation_gt_known": on_validation, **on_test})
        if on_validation > best:
            best_ratio, best = ratio, on_validation
    result.localisation["Zhou threshold (0.2)"] = localisation(true_class_maps, test.boxes, test.masks, correct, config.ratio)
    result.localisation[f"validated threshold ({best_ratio})"] = localisation(
        true_class_maps, test.boxes, test.masks, correct, best_ratio)
    result.artifacts = {"stage1": stage1, "stage2": stage2, "test": test, "validated_ratio": best_ratio}
    bar.close()
    return result


def _accuracy(probs: Tensor, labels: Tensor) -> float:
    return (probs.argmax(1) == labels).float().mean().item()


def attention_windows(maps: Tensor, config: Config) -> Tensor:
    """WS-DAN's crop: the box around every pixel above ``attention_ratio`` of the maximum (no
    connected components), made square with the margin."""
    boxes = mask_to_box(threshold_mask(maps, config.attention_ratio)).float() * (config.image_size / maps.shape[-1])
    return square_windows(boxes, config.image_size, config.margin, config.min_side)


def _attention_views(full: Tensor, views: Tensor, config: Config, drop: bool):
    """WS-DAN-style extra inputs built from the network's own current CAM of the true class."""

    def extra(model: nn.Module, index: Tensor, labels: Tensor) -> list[Tensor]:
        # As in WS-DAN, the crop is the box around all pixels above the threshold (no
        # connected components), made at a coarse resolution: it runs at every step.
        maps = cam_maps(model, views[index], labels, config.training_map_size)
        extra_inputs = [crop(full[index], attention_windows(maps, config), config.input_size)]
        if drop:
            view_size = views.shape[-1]
            keep = (F.interpolate(maps[:, None], size=(view_size, view_size), mode="bilinear") < config.drop_ratio)
            keep = keep.to(views.dtype)
            extra_inputs.append(views[index] * keep)
        return extra_inputs

    return extra


# --- the same zoom on a real photo --------------------------------------------------------------


@dataclass(frozen=True)
class Zoom:
    window: Tensor  # (x0, y0, x1, y1) in the original photo's pixels
    before: Tensor  # class probabilities of the whole photo
    after: Tensor  # class probabilities of the crop


def zoom_in(model: nn.Module, photo: Tensor, preprocessing, ratio: float = 0.2, margin: float = 1.25) -> Zoom:
    """CAM of the whole photo's top class -> Zhou box -> square crop of the *original* photo
    ([3, H, W] in [0, 1], any size) -> the same classifier again. The box is mapped from the
    model's input back to the photo through ``preprocessing.to_photo``, so letterbox bars,
    centre crops and squashing are all undone."""
    whole = preprocessing(photo[None])
    exp = explain(model, whole, method="cam", topk=1)
    height, width = photo.shape[-2:]
    box = preprocessing.to_photo(zhou_boxes(exp.maps, ratio)[0], height, width)[0]
    window = square_windows(box[None], (height, width), margin, min_side=32)[0]
    patch = crop(photo[None], window[None], size=preprocessing.size)
    after = probabilities(model, preprocessing.normalize(patch))[0]
    return Zoom(window, exp.logits.softmax(1)[0], after)


# --- several seeds, and the command line ---------------------------------------------------------


def summarise(experiments: Sequence[Experiment]) -> dict[str, dict[str, dict[str, float]]]:
    """Mean and standard deviation over seeds of every accuracy and localisation figure."""

    def stats(values: list[float]) -> dict[str, float]:
        tensor = torch.tensor(values, dtype=torch.float64)
        std = tensor.std(unbiased=True).item() if len(values) > 1 else 0.0
        return {"mean": tensor.mean().item(), "std": std}

    table: dict[str, dict[str, dict[str, float]]] = {}
    for section in ("accuracy", "localisation"):
        for policy in getattr(experiments[0], section):
            for metric in getattr(experiments[0], section)[policy]:
                values = [getattr(e, section)[policy][metric] for e in experiments]
                table.setdefault(f"{section}: {policy}", {})[metric] = stats(values)
    return table


def run_seeds(seeds: Sequence[int], config: Config = Config(), progress: bool = False,
              experiments: list[Experiment] | None = None) -> dict:
    """Run every seed from scratch; the table of mean and std. Pass a list as ``experiments`` to
    keep the runs themselves (with their models) too."""
    runs = [run_experiment(Config(**{**asdict(config), "seed": seed}), progress) for seed in seeds]
    if experiments is not None:
        experiments.extend(runs)
    return {"seeds": list(seeds), "summary": summarise(runs), "runs": [e.to_dict() for e in runs]}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m camlib.enhance", description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, nargs="+", default=[0], help="one or more seeds")
    parser.add_argument("--json", help="write the results table here")
    parser.add_argument("--epochs", type=int, default=Config.epochs)
    parser.add_argument("--n-train", type=int, default=Config.n_train)
    parser.add_argument("--n-test", type=int, default=Config.n_test)
    args = parser.parse_args(argv)
    config = Config(epochs=args.epochs, n_train=args.n_train, n_test=args.n_test)
    results = run_seeds(args.seed, config, progress=True)
    for row, metrics in results["summary"].items():
        cells = ", ".join(f"{m} {v['mean']:.3f} +- {v['std']:.3f}" for m, v in metrics.items() if not math.isnan(v["mean"]))
        print(f"{row}: {cells}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
