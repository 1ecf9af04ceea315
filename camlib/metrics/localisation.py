"""Localisation: is the map on the object?

- :func:`pointing_game`: is the map's maximum on the object, within a tolerance (Zhang
  et al. 2016);
- :func:`localisation` and :func:`threshold_sweep`: weakly supervised localisation with
  Zhou et al.'s box (threshold the map, box the largest connected region, IoU with the
  true box).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .. import checks
from ..postprocess import zhou_boxes
from .inputs import image_maps


# --- pointing game --------------------------------------------------------------------


def boxes_to_masks(boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """Union of boxes as masks ``[B, H, W]``; ``boxes`` ``[B, 4]`` or ``[B, N, 4]`` of
    (x0, y0, x1, y1) pixels, ends exclusive (rows of NaN are ignored)."""
    if (
        not isinstance(boxes, Tensor)
        or boxes.ndim not in (2, 3)
        or boxes.shape[-1] != 4
    ):
        got = tuple(boxes.shape) if isinstance(boxes, Tensor) else type(boxes).__name__
        raise ValueError(
            "boxes: expected a tensor [B, 4] or [B, N, 4] of (x0, y0, x1, "
            f"y1), got {got}"
        )
    boxes = boxes.float()[:, None] if boxes.ndim == 2 else boxes.float()
    height, width = size
    xs = torch.arange(width, device=boxes.device).view(1, 1, 1, width) + 0.5
    ys = torch.arange(height, device=boxes.device).view(1, 1, height, 1) + 0.5
    x0, y0, x1, y1 = (boxes[..., i, None, None] for i in range(4))
    inside = (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)  # NaN compares False
    return inside.any(dim=1)


def pointing_game(
    maps: Tensor,
    masks: Tensor,
    tolerance: float = 15.0,
    pixel_size: Tensor | None = None,
) -> Tensor:
    """Zhang et al. (2016): a hit [B] when the map's maximum (the first in row-major
    order if several) lies within ``tolerance`` pixels of the object ``masks`` [B, H, W]
    (boxes: see :func:`boxes_to_masks`). Distances are between pixel centres, in pixels
    of the original image: ``pixel_size`` [B, 2] gives its pixels per mask pixel in x
    and y (default 1)."""
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
    dx = (
        torch.arange(width, device=masks.device)[None] - (peak % width)[:, None]
    ) * scale[:, :1]
    dy = (
        torch.arange(height, device=masks.device)[None] - (peak // width)[:, None]
    ) * scale[:, 1:]
    distance2 = dy[:, :, None] ** 2 + dx[:, None, :] ** 2  # [B, H, W]
    nearest = distance2.masked_fill(~masks, float("inf")).flatten(1).amin(dim=1)
    return nearest <= tolerance**2


# --- weakly supervised localisation ---------------------------------------------------


def map_boxes(maps: Tensor, ratio: float, image_size: tuple[int, int]) -> Tensor:
    """Zhou boxes [N, 4] of maps [N, h, w], as float pixels of an image of ``(H,
    W)``."""
    height, width = image_size
    scale = torch.tensor(
        [width / maps.shape[-1], height / maps.shape[-2]] * 2, device=maps.device
    )
    return zhou_boxes(maps, ratio).float() * scale


def localisation_per_image(
    maps: Tensor,
    boxes: Tensor,
    masks: Tensor | None = None,
    ratio: float = 0.2,
    image_size: tuple[int, int] | None = None,
) -> dict[str, Tensor]:
    """Per image: ``iou`` of the Zhou box (threshold ``ratio`` of the max) with the true
    box, and ``on_object``: the centre of the map's peak cell lies on the object
    ``mask`` (if given).

    ``maps`` [N, h, w] may be coarser than the image; ``boxes`` [N, 4] and ``masks`` [N,
    H, W] are at the image's resolution (``image_size``, default the masks' size).
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
            f"maps [N, h, w] and boxes [N, 4]: got {tuple(maps.shape)} and "
            f"{tuple(boxes.shape)}"
        )
    checks.check_maps(maps, boxes.device, "boxes")
    iou = box_iou(map_boxes(maps, ratio, image_size), boxes.float()).diagonal()
    result = {"iou": iou}
    if masks is not None:
        (height, width), (h, w) = image_size, maps.shape[-2:]
        flat = maps.flatten(1).argmax(1)
        peak_x = ((flat % w).float() + 0.5).mul(width / w).long().clamp(max=width - 1)
        peak_y = (
            ((flat // w).float() + 0.5).mul(height / h).long().clamp(max=height - 1)
        )
        result["on_object"] = masks[
            torch.arange(masks.shape[0], device=masks.device), peak_y, peak_x
        ].bool()
    return result


def localisation(
    maps: Tensor, boxes: Tensor, masks: Tensor, correct: Tensor, ratio: float
) -> dict[str, float]:
    """Weakly supervised localisation from maps [N, h, w] of the true class; ``boxes``
    and ``masks`` [N, H, W] are at the image's resolution.

    gt_known: IoU(Zhou box, true box) >= 0.5; top1: that and a correct prediction
    (``correct`` [N] bool); pointing: the map's peak cell centre falls on the object (no
    tolerance; see :func:`pointing_game` for Zhang et al.'s version); mean_iou.
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
    """:func:`localisation` at each threshold ratio (Choe et al. 2020: choose it on
    held-out data)."""
    return [
        {"ratio": ratio, **localisation(maps, boxes, masks, correct, ratio)}
        for ratio in ratios
    ]
