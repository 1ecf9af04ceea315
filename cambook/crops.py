"""Square windows in full-resolution pixels and batched crops: the zoom of Chapter 4.

Windows are ``[N, 4]`` boxes ``(x0, y0, x1, y1)`` with exclusive ends; :func:`crop` cuts
them out of a batch and resizes each with anti-aliasing (``roi_align``).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import roi_align

# --- windows and crops ----------------------------------------------------------------


def check_boxes(
    boxes: Tensor, image_size: tuple[int, int], batch: int | None = None
) -> Tensor:
    """Boxes ``[N, 4]`` (x0, y0, x1, y1), non-empty and inside an image of ``(H,
    W)``."""
    if not isinstance(boxes, Tensor) or boxes.ndim != 2 or boxes.shape[1] != 4:
        got = tuple(boxes.shape) if isinstance(boxes, Tensor) else type(boxes).__name__
        raise ValueError(
            f"boxes: expected a tensor [N, 4] of (x0, y0, x1, y1), got {got}"
        )
    if batch is not None and boxes.shape[0] != batch:
        raise ValueError(
            f"boxes: expected one box per image ({batch}), got {boxes.shape[0]}"
        )
    height, width = image_size
    empty = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
    if bool(empty.any()):
        raise ValueError(
            "boxes: expected x1 > x0 and y1 > y0, got empty boxes at rows "
            f"{empty.nonzero().flatten().tolist()}"
        )
    outside = (boxes[:, :2] < 0).any(1) | (boxes[:, 2] > width) | (boxes[:, 3] > height)
    if bool(outside.any()):
        rows = outside.nonzero().flatten().tolist()
        raise ValueError(
            f"boxes: expected boxes inside the {width}x{height} image, got "
            f"{boxes[rows].tolist()} at rows {rows}"
        )
    return boxes


def crop(images: Tensor, boxes: Tensor, size: int) -> Tensor:
    """Cut ``boxes`` (full-resolution pixels, ends exclusive) out of ``images`` [N, C,
    H, W] and resize each to ``size`` x ``size``. Each output pixel averages about one
    bilinear sample per input pixel it covers (at pixel centres), so a crop at scale 1
    is an exact copy and shrinking is anti-aliased."""
    if (
        not isinstance(images, Tensor)
        or images.ndim != 4
        or not images.is_floating_point()
    ):
        got = (
            f"{tuple(images.shape)} {images.dtype}"
            if isinstance(images, Tensor)
            else type(images).__name__
        )
        raise ValueError(f"images: expected a float tensor [N, C, H, W], got {got}")
    check_boxes(boxes, tuple(images.shape[-2:]), images.shape[0])
    return _crop(images, boxes, size)


def _crop(images: Tensor, boxes: Tensor, size: int) -> Tensor:
    """:func:`crop` without the checks (they wait for the device): for the training
    loop."""
    index = torch.arange(boxes.shape[0], device=boxes.device, dtype=images.dtype)[
        :, None
    ]
    rois = torch.cat([index, boxes.to(images.dtype)], dim=1)
    return roi_align(
        images,
        rois,
        output_size=(size, size),
        spatial_scale=1.0,
        sampling_ratio=-1,
        aligned=True,
    )


def square_windows(
    boxes: Tensor,
    image_size: int | tuple[int, int],
    margin: float = 1.25,
    min_side: float = 24.0,
    side: Tensor | None = None,
) -> Tensor:
    """Square windows centred on ``boxes``, ``margin`` times their longer side (or
    ``side``), at least ``min_side``, shifted (never shrunk) to lie inside an image of
    ``image_size`` (an int for square images, or ``(height, width)``)."""
    height, width = (
        (image_size, image_size) if isinstance(image_size, int) else image_size
    )
    boxes = boxes.float()
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    if side is None:
        side = (boxes[:, 2:] - boxes[:, :2]).amax(dim=1) * margin
    side = side.float().clamp(min_side, min(height, width))
    limit = (
        torch.tensor([width, height], dtype=side.dtype, device=side.device)
        - side[:, None]
    )
    start = torch.minimum((centre - side[:, None] / 2).clamp(min=0), limit)
    return torch.cat([start, start + side[:, None]], dim=1)


def centred_windows(side: Tensor, image_size: int) -> Tensor:
    """Windows of the given sides at the image centre (the "just zoom in" control)."""
    centre = torch.full((side.shape[0], 2), image_size / 2, device=side.device)
    return square_windows(
        torch.cat([centre, centre], 1), image_size, side=side, min_side=1
    )


def random_windows(side: Tensor, image_size: int, generator: torch.Generator) -> Tensor:
    """Windows of the given sides at uniformly random places inside the image."""
    start = torch.rand((side.shape[0], 2), generator=generator).to(side.device) * (
        image_size - side[:, None]
    )
    return torch.cat([start, start + side[:, None]], dim=1)


def peak_windows(maps: Tensor, side: float) -> Tensor:
    """Fixed-size windows centred on each map's maximum; ``maps`` [N, H, W]."""
    height, width = maps.shape[-2:]
    flat = maps.flatten(1).argmax(dim=1)
    centre = torch.stack([flat % width, flat // width], dim=1).float() + 0.5
    sides = torch.full((maps.shape[0],), float(side), device=maps.device)
    return square_windows(
        torch.cat([centre, centre], 1), min(height, width), side=sides, min_side=1
    )
