"""Post-processing of raw maps: upsampling, normalisation, colour overlays and Zhou et
al. boxes.

Everything works on batched torch tensors on their own device; maps have shape ``[...,
h, w]``.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor


def upsample(maps: Tensor, size: tuple[int, int], mode: str = "bilinear") -> Tensor:
    """Resize maps to an image's size.

    Args:
        maps: ``[..., h, w]`` maps, any leading dimensions.
        size: ``(H, W)``, the target size.
        mode: ``"bilinear"`` (default), ``"bicubic"`` or ``"nearest"``.

    Returns:
        ``[..., H, W]`` maps on the same device.
    """
    lead = maps.shape[:-2]
    flat = maps.reshape(-1, 1, *maps.shape[-2:])
    corners = {} if mode == "nearest" else {"align_corners": False}
    resized = F.interpolate(flat, size=tuple(size), mode=mode, **corners)
    return resized.reshape(*lead, *resized.shape[-2:])


def normalize(maps: Tensor, inplace: bool = False) -> Tensor:
    r"""Min-max scale each map to :math:`[0, 1]`.

    .. math:: \operatorname{minmax}(M) = \frac{M - \min M}{\max M - \min M}

    A flat map (max = min) becomes all zeros, never NaN.

    Args:
        maps: ``[..., h, w]`` floating-point maps.
        inplace: overwrite ``maps`` with the result, without temporaries of its size.

    Returns:
        ``[..., h, w]`` maps in :math:`[0, 1]`.
    """
    low = maps.amin(dim=(-2, -1), keepdim=True)
    spread = maps.amax(dim=(-2, -1), keepdim=True) - low
    has_range = spread > 0
    divisor = torch.where(has_range, spread, torch.ones_like(spread))
    if inplace:
        return maps.sub_(low).div_(divisor).mul_(has_range)
    return (maps - low) / divisor * has_range


def to_image_maps(raw: Tensor, size: tuple[int, int], mode: str = "bilinear") -> Tensor:
    r"""The display pipeline:
    :math:`\tilde M = \operatorname{minmax}(\operatorname{up}(\max(M, 0)))`.

    ReLU keeps the positive evidence for the class, upsampling brings the map to the
    image's size, and min-max scaling puts it in :math:`[0, 1]`.

    Args:
        raw: ``[..., h, w]`` raw maps (``Explanation.raw``).
        size: ``(H, W)``, the image's size.
        mode: the upsampling mode, as in :func:`upsample`.

    Returns:
        ``[..., H, W]`` maps in :math:`[0, 1]` (``Explanation.maps``).
    """
    return normalize(upsample(raw.clamp_min(0), size, mode))


def threshold_mask(maps: Tensor, ratio: float = 0.2) -> Tensor:
    r"""Pixels at or above ``ratio`` times each map's maximum:
    :math:`M \ge \tau \max M`.

    Args:
        maps: ``[..., H, W]`` maps.
        ratio: :math:`\tau` in :math:`[0, 1]`; Zhou et al. use 0.2.

    Returns:
        ``[..., H, W]`` boolean masks.

    Raises:
        ValueError: ``ratio`` outside :math:`[0, 1]`.
    """
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio: expected a number in [0, 1], got {ratio}")
    return maps >= ratio * maps.amax(dim=(-2, -1), keepdim=True)


def connected_components(mask: Tensor) -> Tensor:
    """8-connected component labels of boolean masks, batched on the masks' device.

    Args:
        mask: ``[..., H, W]`` boolean masks.

    Returns:
        ``[..., H, W]`` long labels: 0 for background, one positive label per component.

    Each foreground pixel starts with its own label (flat index + 1), and labels spread
    as maxima until nothing changes, so each ends as its component's largest index. One
    round spreads along whole runs of foreground in a row, then in a column (a segmented
    running maximum, both ways), then to diagonal neighbours: a blob needs a handful of
    rounds, not one per pixel of its diameter.
    """
    height, width = mask.shape[-2:]
    foreground = mask.reshape(-1, height, width).bool()
    # int32 halves the memory traffic while run-offset labels (see below) fit in it
    dtype = torch.int32 if (width + 1) * (height * width + 1) < 2**31 else torch.int64
    labels = torch.arange(
        1, height * width + 1, device=mask.device, dtype=dtype
    ).reshape(1, height, width)
    labels = labels * foreground
    while True:
        previous = labels
        labels = _spread_along_runs(labels, foreground, dim=2)
        labels = _spread_along_runs(labels, foreground, dim=1)
        labels = _max_3x3(labels) * foreground
        if torch.equal(labels, previous):
            break
    return labels.reshape(mask.shape).long()


def _spread_along_runs(labels: Tensor, foreground: Tensor, dim: int) -> Tensor:
    """Every pixel takes the largest label of its run of foreground pixels along
    ``dim``."""
    return torch.maximum(
        _running_max_in_runs(labels, foreground, dim),
        _running_max_in_runs(labels.flip(dim), foreground.flip(dim), dim).flip(dim),
    )


def _running_max_in_runs(labels: Tensor, foreground: Tensor, dim: int) -> Tensor:
    # Runs are numbered by counting background pixels; offsetting labels by run number
    # times a bound makes one cummax restart at every run, as earlier runs hold smaller
    # values.
    offset = torch.cumsum(~foreground, dim=dim, dtype=labels.dtype) * (
        labels.shape[-1] * labels.shape[-2] + 1
    )
    return (torch.cummax(offset + labels, dim=dim).values - offset) * foreground


def _max_3x3(labels: Tensor) -> Tensor:
    padded = F.pad(labels, (1, 1, 1, 1))
    rows = torch.maximum(torch.maximum(padded[:, :-2], padded[:, 1:-1]), padded[:, 2:])
    return torch.maximum(torch.maximum(rows[..., :-2], rows[..., 1:-1]), rows[..., 2:])


def largest_component(mask: Tensor) -> Tensor:
    """The largest 8-connected component of each mask.

    Args:
        mask: ``[..., H, W]`` boolean masks.

    Returns:
        ``[..., H, W]`` boolean masks holding one component each (empty stays empty; of
        components of equal size, the one with the largest label).
    """
    labels = connected_components(mask)
    flat = labels.reshape(-1, labels.shape[-2] * labels.shape[-1])
    counts = torch.zeros(
        flat.shape[0], flat.shape[1] + 1, device=mask.device, dtype=torch.long
    )
    counts.scatter_add_(1, flat, torch.ones_like(flat))
    counts[:, 0] = 0  # background is not a component
    biggest = counts.argmax(dim=1, keepdim=True)
    return ((flat == biggest) & (flat > 0)).reshape(mask.shape)


def mask_to_box(mask: Tensor) -> Tensor:
    """The bounding box of each mask.

    Args:
        mask: ``[..., H, W]`` boolean masks.

    Returns:
        ``[..., 4]`` long boxes ``(x0, y0, x1, y1)`` in pixels, ends exclusive; all
        zeros for an empty mask.
    """
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
    r"""Zhou et al.'s (2016) box: threshold the map at :math:`\tau \max M`, keep the
    largest 8-connected region, and take its bounding box.

    On the min-max scaled maps of ``Explanation.maps`` the threshold is simply
    :math:`\tilde M \ge \tau`. An all-zero map carries no evidence and gives the whole
    image.

    Args:
        maps: ``[..., H, W]`` maps, usually image-sized.
        ratio: :math:`\tau`, 0.2 as in Zhou et al.

    Returns:
        ``[..., 4]`` long boxes ``(x0, y0, x1, y1)``, ends exclusive.

    Raises:
        ValueError: ``ratio`` outside :math:`[0, 1]`.
    """
    return mask_to_box(largest_component(threshold_mask(maps, ratio)))


# matplotlib's "jet" as (position, value) knots per channel, so the default colour map
# needs no matplotlib (the [viz] extra brings the others)
_JET = (
    ((0.0, 0.0), (0.35, 0.0), (0.66, 1.0), (0.89, 1.0), (1.0, 0.5)),
    ((0.0, 0.0), (0.125, 0.0), (0.375, 1.0), (0.64, 1.0), (0.91, 0.0), (1.0, 0.0)),
    ((0.0, 0.5), (0.11, 1.0), (0.34, 1.0), (0.65, 0.0), (1.0, 0.0)),
)


def _interpolate(x: Tensor, knots: tuple[tuple[float, float], ...]) -> Tensor:
    xs = torch.tensor([k[0] for k in knots], dtype=x.dtype)
    ys = torch.tensor([k[1] for k in knots], dtype=x.dtype)
    right = torch.searchsorted(xs, x, right=True).clamp(1, len(knots) - 1)
    x0, x1, y0, y1 = xs[right - 1], xs[right], ys[right - 1], ys[right]
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


@lru_cache(maxsize=16)
def _colour_table(cmap: str, device: torch.device) -> Tensor:
    positions = torch.linspace(0, 1, 256, dtype=torch.float64)
    if cmap == "jet":
        table = torch.stack([_interpolate(positions, knots) for knots in _JET], dim=1)
        return table.to(device=device, dtype=torch.float32)
    try:
        import matplotlib
    except ImportError:
        raise ImportError(
            f"cmap={cmap!r} needs matplotlib (pip install 'camlib[viz]'); "
            "the default 'jet' works without it"
        ) from None
    if cmap not in matplotlib.colormaps:
        raise ValueError(f"cmap: expected a matplotlib colour map name, got {cmap!r}")
    table = matplotlib.colormaps[cmap](positions.numpy())[:, :3]
    return torch.as_tensor(table, dtype=torch.float32, device=device)


def colorize(maps: Tensor, cmap: str = "jet") -> Tensor:
    """Colour maps for display.

    Args:
        maps: ``[..., H, W]`` maps in :math:`[0, 1]` (values outside are clipped).
        cmap: ``"jet"`` (built in) or any matplotlib colour map name (needs matplotlib,
            the ``viz`` extra).

    Returns:
        ``[..., 3, H, W]`` RGB in :math:`[0, 1]`, on the maps' device.

    Raises:
        ImportError: a colour map other than ``"jet"`` without matplotlib.
        ValueError: an unknown colour map name.
    """
    table = _colour_table(cmap, maps.device)
    index = (maps.clamp(0, 1) * 255).round().long()
    return table[index].movedim(-1, -3)


def overlay(
    images: Tensor, maps: Tensor, alpha: float = 0.5, cmap: str = "jet"
) -> Tensor:
    r"""Blend coloured maps over images:
    :math:`(1 - \alpha)\, X + \alpha\, \operatorname{colour}(\tilde M)`.

    For display only: it does not change what the classifier sees.

    Args:
        images: ``[B, 3, H, W]`` RGB in :math:`[0, 1]` (the photo, not the normalised
            input).
        maps: ``[B, H, W]`` or ``[B, T, H, W]`` maps in :math:`[0, 1]` (one overlay per
            map).
        alpha: the map's opacity in :math:`[0, 1]`.
        cmap: as in :func:`colorize`.

    Returns:
        ``[B, 3, H, W]`` or ``[B, T, 3, H, W]`` RGB in :math:`[0, 1]`.

    Raises:
        ValueError: ``alpha`` outside :math:`[0, 1]`.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha: expected a number in [0, 1], got {alpha}")
    colours = colorize(maps, cmap)
    base = images if maps.ndim == 3 else images.unsqueeze(1)
    return ((1 - alpha) * base + alpha * colours).clamp(0, 1)
