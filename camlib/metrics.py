"""Evaluating maps: do they point at what the model uses, and at the object?

- :func:`perturbation_curve`: deletion and insertion curves and their AUC (Petsiuk et al. 2018);
- :func:`confidence_change`: average drop and increase in confidence (Chattopadhay et al. 2018);
- :func:`pointing_game`: is the map's maximum on the object, within a tolerance (Zhang et al. 2016);
- :func:`localisation` and :func:`threshold_sweep`: weakly supervised localisation (Zhou box);
- ROAD, remove and debias (Rong et al. 2022), is in :mod:`camlib.road`.

Every function is method-agnostic: it takes maps ``[B, H, W]`` (one per image, for the class
``c`` of that image), however they were made. Model-based metrics run batched forwards on the
images' device, under ``torch.no_grad``, and leave the model's training flags as they were.
Scores are probabilities ``P_c`` (softmax of the logits).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from . import checks
from .capture import model_state_preserved
from .explain import logits_of
from .postprocess import upsample, zhou_boxes

BASELINES = ("zero", "mean", "blur")


# --- inputs -----------------------------------------------------------------------------------


def image_maps(maps: object, images: Tensor, reference: str = "images") -> Tensor:
    """Maps as ``[B, H, W]`` at the images' size: ``[B, H, W]`` or ``[B, 1, H, W]`` accepted,
    other sizes upsampled bilinearly. Refused: other dtypes, batch sizes or devices than the
    ``images`` (or masks: ``reference``), NaN or Inf, an empty batch."""
    if not isinstance(maps, Tensor) or not maps.is_floating_point():
        got = f"dtype {maps.dtype}" if isinstance(maps, Tensor) else type(maps).__name__
        raise TypeError(f"maps: expected a floating-point tensor [B, H, W], got {got}")
    if maps.ndim == 4 and maps.shape[1] == 1:
        maps = maps[:, 0]
    batch = images.shape[0]
    if maps.ndim != 3 or maps.shape[0] != batch:
        raise ValueError(
            f"maps: expected one map per image, [{batch}, H, W] or [{batch}, 1, H, W], "
            f"got shape {tuple(maps.shape)}"
        )
    checks.check_maps(maps, images.device, reference)
    size = tuple(images.shape[-2:])
    return maps if tuple(maps.shape[-2:]) == size else upsample(maps, size)


def class_probabilities(
    model: nn.Module, images: Tensor, classes: Tensor | None = None, max_batch: int = 128
) -> tuple[Tensor, Tensor]:
    """``(P_c [N], c [N])``: probability of ``classes`` (default: the predicted ones), in
    forwards of at most ``max_batch`` images."""
    scores, chosen = [], []
    with torch.no_grad(), model_state_preserved(model):
        for start in range(0, images.shape[0], max_batch):
            probs = logits_of(model(images[start : start + max_batch])).softmax(dim=1)
            part = probs.argmax(1) if classes is None else classes[start : start + max_batch]
            checks.check_class_range(part, probs.shape[1])
            chosen.append(part)
            scores.append(probs.gather(1, part[:, None])[:, 0])
    return torch.cat(scores), torch.cat(chosen)


def _class_column(classes: object, images: Tensor) -> Tensor | None:
    rows = checks.classes_as_rows(classes, images.shape[0], images.device)
    if rows is not None and rows.shape[1] != 1:
        raise ValueError(
            f"classes: expected one class per image, [B] or [B, 1], got {tuple(rows.shape)}"
        )
    return None if rows is None else rows[:, 0]


def _check_inputs(
    model: nn.Module, images: Tensor, maps: object, classes: object, max_batch: int
) -> tuple[Tensor, Tensor, Tensor]:
    images = checks.check_images(model, images)
    maps = image_maps(maps, images)
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
        raise ValueError(f"max_batch: expected a positive int, got {max_batch!r}")
    before, chosen = class_probabilities(model, images, _class_column(classes, images), max_batch)
    return maps, before, chosen


def baseline_images(
    images: Tensor, kind: str = "zero", sigma: float = 5.0, kernel: int = 11
) -> Tensor:
    """What removed pixels become: ``zero`` (all zeros: for normalised inputs, the data set's
    mean colour), ``mean`` (each image's own mean per channel) or ``blur`` (a Gaussian blur of
    the image, ``kernel`` taps, ``sigma`` pixels: Petsiuk et al. use 11 and 5)."""
    if kind == "zero":
        return torch.zeros_like(images)
    if kind == "mean":
        return images.mean(dim=(-2, -1), keepdim=True).expand_as(images).clone()
    if kind == "blur":
        from torchvision.transforms.functional import gaussian_blur

        return gaussian_blur(images, [kernel, kernel], [sigma, sigma])
    raise ValueError(f"baseline: expected one of {BASELINES}, got {kind!r}")


# --- deletion and insertion -------------------------------------------------------------------


@dataclass(frozen=True)
class Curves:
    """Deletion or insertion curves: ``scores[b, s]`` is ``P_c`` of image ``b`` once the first
    ``fractions[s]`` of its pixels (in the map's order) are removed (deletion) or inserted."""

    mode: str
    fractions: Tensor  # [S + 1], from 0 to 1
    scores: Tensor  # [B, S + 1]
    auc: Tensor  # [B]: trapezoid rule over the fraction axis
    classes: Tensor  # [B]


def pixel_order(maps: Tensor) -> Tensor:
    """Flat pixel indices ``[B, H * W]`` by descending map value; ties in row-major order."""
    return torch.sort(maps.flatten(1), dim=1, descending=True, stable=True).indices


def step_counts(
    pixels: int, steps: int | None = None, pixels_per_step: int | None = None
) -> Tensor:
    """How many pixels are changed after each step: ``round(s * P / S)`` for ``steps`` S, or
    ``min(s * n, P)`` for ``pixels_per_step`` n (then S = ceil(P / n)); starts at 0, ends at P."""
    if (steps is None) == (pixels_per_step is None):
        raise ValueError("give exactly one of steps and pixels_per_step")
    size = steps if steps is not None else pixels_per_step
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        name = "steps" if steps is not None else "pixels_per_step"
        raise ValueError(f"{name}: expected a positive int, got {size!r}")
    if steps is not None:
        return torch.div(
            torch.arange(steps + 1) * pixels + steps // 2, steps, rounding_mode="floor"
        )
    count = -(-pixels // pixels_per_step)
    return (torch.arange(count + 1) * pixels_per_step).clamp(max=pixels)


def perturbation_curve(
    model: nn.Module,
    images: Tensor,
    maps: Tensor,
    classes: object = None,
    mode: str = "deletion",
    steps: int | None = 50,
    pixels_per_step: int | None = None,
    baseline: str = "zero",
    max_batch: int = 128,
) -> Curves:
    """Petsiuk et al.'s deletion (``P_c`` as the most important pixels are replaced by the
    baseline; lower AUC is better) or insertion (``P_c`` as they are put back into the
    baseline image; higher is better). ``classes``: default the predicted class.

    All ``B * (S + 1)`` perturbed images go through the model in forwards of ``max_batch``,
    each built on the fly from the pixel ranks, so memory is bounded by ``max_batch`` images.
    """
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"mode: expected 'deletion' or 'insertion', got {mode!r}")
    if pixels_per_step is not None:
        steps = None
    maps, _, chosen = _check_inputs(model, images, maps, classes, max_batch)
    batch, height, width = maps.shape
    pixels = height * width
    counts = step_counts(pixels, steps, pixels_per_step).to(images.device)
    fill = baseline_images(images, baseline)
    order = pixel_order(maps)
    rank = torch.empty_like(order)  # rank[b, p]: when pixel p of image b is changed
    rank.scatter_(1, order, torch.arange(pixels, device=maps.device).expand(batch, pixels))
    rows = batch * counts.shape[0]
    scores = torch.empty(rows, device=images.device)
    with torch.no_grad(), model_state_preserved(model):
        for start in range(0, rows, max_batch):
            index = torch.arange(start, min(start + max_batch, rows), device=images.device)
            image, step = index // counts.shape[0], index % counts.shape[0]
            changed = (rank[image] < counts[step][:, None]).view(-1, 1, height, width)
            if mode == "deletion":
                perturbed = torch.where(changed, fill[image], images[image])
            else:
                perturbed = torch.where(changed, images[image], fill[image])
            probs = logits_of(model(perturbed)).softmax(dim=1)
            scores[index] = probs.gather(1, chosen[image][:, None])[:, 0]
    scores = scores.view(batch, counts.shape[0])
    fractions = counts.to(scores.dtype) / pixels
    return Curves(mode, fractions, scores, torch.trapezoid(scores, fractions, dim=1), chosen)


# --- confidence -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfidenceChange:
    """Chattopadhay et al.'s measures, per image: ``before`` Y = P_c(image), ``after``
    O = P_c(image * map), ``drop`` = max(0, Y - O) / Y * 100, ``increase`` = O > Y."""

    before: Tensor
    after: Tensor
    drop: Tensor
    increase: Tensor
    classes: Tensor

    @property
    def average_drop(self) -> float:
        """Mean drop in confidence, in percent (lower is better)."""
        return self.drop.mean().item()

    @property
    def increase_rate(self) -> float:
        """Share of images whose confidence rises, in percent (higher is better)."""
        return self.increase.float().mean().item() * 100


def confidence_change(
    model: nn.Module, images: Tensor, maps: Tensor, classes: object = None, max_batch: int = 128
) -> ConfidenceChange:
    """Multiply the model's input by the map (clamped to [0, 1], image-sized) and compare ``P_c``
    with the original's. As in pytorch-grad-cam, the input tensor is multiplied as given
    (normalised inputs then fade towards the data set's mean colour)."""
    maps, before, chosen = _check_inputs(model, images, maps, classes, max_batch)
    masked = images * maps.clamp(0, 1)[:, None]
    after, _ = class_probabilities(model, masked, chosen, max_batch)
    drop = (before - after).clamp_min(0) / before * 100
    return ConfidenceChange(before, after, drop, after > before, chosen)


# --- pointing game ----------------------------------------------------------------------------


def boxes_to_masks(boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """Union of boxes as masks ``[B, H, W]``; ``boxes`` ``[B, 4]`` or ``[B, N, 4]`` of
    (x0, y0, x1, y1) pixels, ends exclusive (rows of NaN are ignored)."""
    if not isinstance(boxes, Tensor) or boxes.ndim not in (2, 3) or boxes.shape[-1] != 4:
        got = tuple(boxes.shape) if isinstance(boxes, Tensor) else type(boxes).__name__
        raise ValueError(
            f"boxes: expected a tensor [B, 4] or [B, N, 4] of (x0, y0, x1, y1), got {got}"
        )
    boxes = boxes.float()[:, None] if boxes.ndim == 2 else boxes.float()
    height, width = size
    xs = torch.arange(width, device=boxes.device).view(1, 1, 1, width) + 0.5
    ys = torch.arange(height, device=boxes.device).view(1, 1, height, 1) + 0.5
    x0, y0, x1, y1 = (boxes[..., i, None, None] for i in range(4))
    inside = (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)  # NaN compares False
    return inside.any(dim=1)


def pointing_game(
    maps: Tensor, masks: Tensor, tolerance: float = 15.0, pixel_size: Tensor | None = None
) -> Tensor:
    """Zhang et al. (2016): a hit [B] when the map's maximum (the first in row-major order if
    several) lies within ``tolerance`` pixels of the object ``masks`` [B, H, W] (boxes: see
    :func:`boxes_to_masks`). Distances are between pixel centres, in pixels of the original
    image: ``pixel_size`` [B, 2] gives its pixels per mask pixel in x and y (default 1)."""
    if not isinstance(masks, Tensor) or masks.ndim != 3:
        got = tuple(masks.shape) if isinstance(masks, Tensor) else type(masks).__name__
        raise ValueError(f"masks: expected a tensor [B, H, W], got {got}")
    masks = masks.bool()
    maps = image_maps(maps, masks, "masks")
    empty = ~masks.flatten(1).any(1)
    if bool(empty.any()):
        raise ValueError(
            "masks: expected an object in every mask, got empty masks at rows "
            f"{empty.nonzero().flatten().tolist()}"
        )
    batch, height, width = masks.shape
    peak = maps.flatten(1).argmax(dim=1)
    scale = (
        torch.ones(batch, 2, device=masks.device)
        if pixel_size is None
        else pixel_size.to(masks.device).float()
    )
    dx = (torch.arange(width, device=masks.device)[None] - (peak % width)[:, None]) * scale[:, :1]
    dy = (torch.arange(height, device=masks.device)[None] - (peak // width)[:, None]) * scale[:, 1:]
    distance2 = dy[:, :, None] ** 2 + dx[:, None, :] ** 2  # [B, H, W]
    nearest = distance2.masked_fill(~masks, float("inf")).flatten(1).amin(dim=1)
    return nearest <= tolerance**2


# --- weakly supervised localisation -----------------------------------------------------------


def map_boxes(maps: Tensor, ratio: float, image_size: tuple[int, int]) -> Tensor:
    """Zhou boxes [N, 4] of maps [N, h, w], as float pixels of an image of ``(H, W)``."""
    height, width = image_size
    scale = torch.tensor([width / maps.shape[-1], height / maps.shape[-2]] * 2, device=maps.device)
    return zhou_boxes(maps, ratio).float() * scale


def localisation_per_image(
    maps: Tensor,
    boxes: Tensor,
    masks: Tensor | None = None,
    ratio: float = 0.2,
    image_size: tuple[int, int] | None = None,
) -> dict[str, Tensor]:
    """Per image: ``iou`` of the Zhou box (threshold ``ratio`` of the max) with the true box, and
    ``on_object``: the centre of the map's peak cell lies on the object ``mask`` (if given).

    ``maps`` [N, h, w] may be coarser than the image; ``boxes`` [N, 4] and ``masks`` [N, H, W]
    are at the image's resolution (``image_size``, default the masks' size).
    """
    from torchvision.ops import box_iou

    if image_size is None:
        if masks is None:
            raise ValueError("image_size: expected (H, W) when no masks are given")
        image_size = tuple(masks.shape[-2:])
    if not isinstance(maps, Tensor) or not maps.is_floating_point():
        got = f"dtype {maps.dtype}" if isinstance(maps, Tensor) else type(maps).__name__
        raise TypeError(f"maps: expected a floating-point tensor [N, h, w], got {got}")
    if maps.ndim != 3 or boxes.shape != (maps.shape[0], 4):
        raise ValueError(
            f"maps [N, h, w] and boxes [N, 4]: got {tuple(maps.shape)} and {tuple(boxes.shape)}"
        )
    checks.check_maps(maps, boxes.device, "boxes")
    iou = box_iou(map_boxes(maps, ratio, image_size), boxes.float()).diagonal()
    result = {"iou": iou}
    if masks is not None:
        (height, width), (h, w) = image_size, maps.shape[-2:]
        flat = maps.flatten(1).argmax(1)
        peak_x = ((flat % w).float() + 0.5).mul(width / w).long().clamp(max=width - 1)
        peak_y = ((flat // w).float() + 0.5).mul(height / h).long().clamp(max=height - 1)
        result["on_object"] = masks[
            torch.arange(masks.shape[0], device=masks.device), peak_y, peak_x
        ].bool()
    return result


def localisation(
    maps: Tensor, boxes: Tensor, masks: Tensor, correct: Tensor, ratio: float
) -> dict[str, float]:
    """Weakly supervised localisation from maps [N, h, w] of the true class; ``boxes`` and
    ``masks`` [N, H, W] are at the image's resolution.

    gt_known: IoU(Zhou box, true box) >= 0.5; top1: that and a correct prediction (``correct``
    [N] bool); pointing: the map's peak cell centre falls on the object (no tolerance; see
    :func:`pointing_game` for Zhang et al.'s version); mean_iou.
    """
    per_image = localisation_per_image(maps, boxes, masks, ratio)
    hit = per_image["iou"] >= 0.5
    return {
        "gt_known": hit.float().mean().item(),
        "top1": (hit & correct.bool()).float().mean().item(),
        "pointing": per_image["on_object"].float().mean().item(),
        "mean_iou": per_image["iou"].mean().item(),
    }


def threshold_sweep(
    maps: Tensor,
    boxes: Tensor,
    masks: Tensor,
    correct: Tensor,
    ratios: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(1, 10)),
) -> list[dict[str, float]]:
    """:func:`localisation` at each threshold ratio (Choe et al. 2020: choose it on held-out
    data)."""
    return [
        {"ratio": ratio, **localisation(maps, boxes, masks, correct, ratio)} for ratio in ratios
    ]
