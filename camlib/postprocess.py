"""Post-processing of raw maps: upsampling, normalisation, colour overlays and Zhou et al. boxes.

Everything works on batched torch tensors on their own device; maps have shape ``[..., h, w]``.
"""
from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor

# Connected components: check for convergence once per this many propagation steps (one host sync).
_STEPS_PER_CHECK = 8


def upsample(maps: Tensor, size: tuple[int, int], mode: str = "bilinear") -> Tensor:
    """Resize ``[..., h, w]`` maps to ``size`` (``bilinear``, ``bicubic`` or ``nearest``)."""
    lead = maps.shape[:-2]
    flat = maps.reshape(-1, 1, *maps.shape[-2:])
    corners = {} if mode == "nearest" else {"align_corners": False}
    resized = F.interpolate(flat, size=tuple(size), mode=mode, **corners)
    return resized.reshape(*lead, *resized.shape[-2:])


def normalize(maps: Tensor) -> Tensor:
    """Min-max scale each ``[h, w]`` map to ``[0, 1]``; a flat map becomes all zeros, never NaN."""
    low = maps.amin(dim=(-2, -1), keepdim=True)
    spread = maps.amax(dim=(-2, -1), keepdim=True) - low
    has_range = spread > 0
    scaled = (maps - low) / torch.where(has_range, spread, torch.ones_like(spread))
    return scaled * has_range


def to_image_maps(raw: Tensor, size: tuple[int, int], mode: str = "bilinear") -> Tensor:
    """The display pipeline: ReLU (positive evidence only), upsample to ``size``, normalise."""
    return normalize(upsample(raw.clamp_min(0), size, mode))


def threshold_mask(maps: Tensor, ratio: float = 0.2) -> Tensor:
    """Pixels at or above ``ratio`` times each map's maximum (Zhou et al. use 0.2)."""
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio: expected a number in [0, 1], got {ratio}")
    return maps >= ratio * maps.amax(dim=(-2, -1), keepdim=True)


def connected_components(mask: Tensor) -> Tensor:
    """8-connected component labels of ``[..., H, W]`` boolean masks; 0 is background.

    Each foreground pixel starts with its own label (flat index + 1) and takes the largest
    label among its neighbours until nothing changes: labels are then component-wide maxima.
    """
    height, width = mask.shape[-2:]
    flat_mask = mask.reshape(-1, 1, height, width)
    dtype = torch.float32 if height * width < 2**24 else torch.float64
    index = torch.arange(1, height * width + 1, device=mask.device, dtype=dtype)
    foreground = flat_mask.to(dtype)
    labels = index.reshape(1, 1, height, width) * foreground
    while True:
        previous = labels
        for _ in range(_STEPS_PER_CHECK):
            labels = F.max_pool2d(labels, kernel_size=3, stride=1, padding=1) * foreground
        if torch.equal(labels, previous):
            break
    return labels.reshape(mask.shape).long()


def largest_component(mask: Tensor) -> Tensor:
    """Keep only the largest 8-connected component of each ``[..., H, W]`` mask."""
    labels = connected_components(mask)
    flat = labels.reshape(-1, labels.shape[-2] * labels.shape[-1])
    counts = torch.zeros(flat.shape[0], flat.shape[1] + 1, device=mask.device, dtype=torch.long)
    counts.scatter_add_(1, flat, torch.ones_like(flat))
    counts[:, 0] = 0  # background is not a component
    biggest = counts.argmax(dim=1, keepdim=True)
    return ((flat == biggest) & (flat > 0)).reshape(mask.shape)


def mask_to_box(mask: Tensor) -> Tensor:
    """Bounding boxes ``[..., 4]`` as ``(x0, y0, x1, y1)`` pixels, ends exclusive; empty -> zeros."""
    rows = mask.any(dim=-1)  # [..., H]
    cols = mask.any(dim=-2)  # [..., W]
    y0, y1 = _span(rows)
    x0, x1 = _span(cols)
    return torch.stack([x0, y0, x1, y1], dim=-1)


def _span(occupied: Tensor) -> tuple[Tensor, Tensor]:
    length = occupied.shape[-1]
    first = occupied.int().argmax(dim=-1)
    last_exclusive = length - occupied.flip(-1).int().argmax(dim=-1)
    nonempty = occupied.any(dim=-1)
    return first * nonempty, last_exclusive * nonempty


def zhou_boxes(maps: Tensor, ratio: float = 0.2) -> Tensor:
    """Zhou et al. (2016) localisation: threshold at ``ratio`` of the max, box the largest blob.

    ``maps`` is ``[..., H, W]`` (usually image-sized maps); returns ``[..., 4]`` long boxes
    ``(x0, y0, x1, y1)`` with exclusive ends. An all-zero map carries no evidence and gives the
    whole image.
    """
    return mask_to_box(largest_component(threshold_mask(maps, ratio)))


@lru_cache(maxsize=16)
def _colour_table(cmap: str, device: torch.device) -> Tensor:
    import matplotlib

    table = matplotlib.colormaps[cmap](torch.linspace(0, 1, 256).numpy())[:, :3]
    return torch.as_tensor(table, dtype=torch.float32, device=device)


def colorize(maps: Tensor, cmap: str = "jet") -> Tensor:
    """``[..., H, W]`` maps in ``[0, 1]`` to RGB ``[..., 3, H, W]`` through a matplotlib colour map."""
    table = _colour_table(cmap, maps.device)
    index = (maps.clamp(0, 1) * 255).round().long()
    return table[index].movedim(-1, -3)


def overlay(images: Tensor, maps: Tensor, alpha: float = 0.5, cmap: str = "jet") -> Tensor:
    """Blend coloured maps over images: ``(1 - alpha) * image + alpha * colour(map)``.

    ``images`` are RGB in ``[0, 1]``, ``[B, 3, H, W]``; ``maps`` are ``[B, H, W]`` or
    ``[B, K, H, W]`` (one overlay per map). This is for display only: it does not change what
    the classifier sees.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha: expected a number in [0, 1], got {alpha}")
    colours = colorize(maps, cmap)
    base = images if maps.ndim == 3 else images.unsqueeze(1)
    return ((1 - alpha) * base + alpha * colours).clamp(0, 1)
