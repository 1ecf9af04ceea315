"""The real-photo zoom of Chapter 4 (:func:`zoom_in`) and its controls: same-size
windows that the map did not choose.

A CAM window is worth something only if it beats windows of the same size placed
elsewhere: cutting any square out of a wide photo also changes the object's size and
shape in the input. "Elsewhere" needs checking (:func:`overlaps`: a window that shares
most of its pixels with the CAM window is no control), and so does the noise:
:func:`shifted_windows` moves the CAM window by a pixel or two, which changes nothing a
map could mean but resamples every pixel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .crops import crop, square_windows
from .enhance import probabilities
from camlib.explain import explain
from camlib.postprocess import zhou_boxes


@dataclass(frozen=True)
class Zoom:
    window: Tensor  # (x0, y0, x1, y1) in the original photo's pixels
    before: Tensor  # class probabilities of the whole photo
    after: Tensor  # class probabilities of the crop


def zoom_in(
    model: nn.Module,
    photo: Tensor,
    preprocessing,
    ratio: float = 0.2,
    margin: float = 1.25,
) -> Zoom:
    """CAM of the whole photo's top class -> Zhou box -> square crop of the *original*
    photo ([3, H, W] in [0, 1], any size) -> the same classifier again. The box is
    mapped from the model's input back to the photo through ``preprocessing.to_photo``,
    so letterbox bars, centre crops and squashing are all undone."""
    whole = preprocessing(photo[None])
    exp = explain(model, whole, method="cam", topk=1)
    height, width = photo.shape[-2:]
    box = preprocessing.to_photo(zhou_boxes(exp.maps, ratio)[0], height, width)[0]
    window = square_windows(box[None], (height, width), margin, min_side=32)[0]
    patch = crop(photo[None], window[None], size=preprocessing.size)
    after = probabilities(model, preprocessing.normalize(patch))[0]
    return Zoom(window, exp.logits.softmax(1)[0], after)


def sliding_windows(side: float, height: int, width: int, count: int = 8) -> Tensor:
    """``count`` square windows of ``side`` pixels, evenly spaced along the photo's
    longer axis (the first at one edge, the last at the other) and centred across the
    shorter one. Returns ``[count, 4]`` boxes (x0, y0, x1, y1) in the photo's pixels."""
    if count < 1 or not 0 < side <= min(height, width) + 1e-3:
        raise ValueError(
            f"sliding_windows: expected count >= 1 and 0 < side <= "
            f"{min(height, width)}, got count={count}, side={side}"
        )
    side = min(
        float(side), float(min(height, width))
    )  # a window may carry float rounding
    fractions = torch.linspace(0, 1, count) if count > 1 else torch.tensor([0.5])
    along = fractions * (max(height, width) - side)
    across = torch.full_like(along, (min(height, width) - side) / 2)
    x0, y0 = (along, across) if width >= height else (across, along)
    return torch.stack([x0, y0, x0 + side, y0 + side], dim=1)


def overlaps(windows: Tensor, window: Tensor) -> Tensor:
    """Intersection over union ``[N]`` of each of ``windows`` ([N, 4]) with ``window``
    ([4]), all as (x0, y0, x1, y1) in pixels."""
    if windows.ndim != 2 or windows.shape[-1] != 4 or window.shape != (4,):
        raise ValueError(
            f"overlaps: expected windows [N, 4] and one window [4], got "
            f"{tuple(windows.shape)} and {tuple(window.shape)}"
        )
    from torchvision.ops import box_iou

    return box_iou(windows, window.to(windows)[None])[:, 0]


def shifted_windows(
    window: Tensor, shifts: Sequence[float], height: int, width: int
) -> Tensor:
    """``window`` ([4], x0, y0, x1, y1) moved by every (dx, dy) in ``shifts`` x
    ``shifts`` pixels, keeping only the copies that stay inside a ``height`` x ``width``
    photo (a full-height window can only move sideways). Returns ``[N, 4]``, N >= 1 when
    ``shifts`` holds 0 and ``window`` lies inside the photo."""
    if window.shape != (4,):
        raise ValueError(
            f"shifted_windows: expected one window [4], got {tuple(window.shape)}"
        )
    steps = torch.tensor(
        [float(s) for s in shifts], dtype=window.dtype, device=window.device
    )
    dy, dx = torch.meshgrid(steps, steps, indexing="ij")
    moves = torch.stack([dx, dy, dx, dy], dim=-1).reshape(-1, 4)
    moved = window + moves
    tolerance = 1e-3  # a window may carry float rounding at the photo's edge
    inside = (
        (moved[:, :2] >= -tolerance).all(1)
        & (moved[:, 2] <= width + tolerance)
        & (moved[:, 3] <= height + tolerance)
    )
    return moved[inside]


def window_probabilities(
    model: nn.Module, photo: Tensor, windows: Tensor, preprocessing
) -> Tensor:
    """Class probabilities ``[N, classes]`` of each window cut from ``photo`` ([3, H, W]
    in [0, 1]) and resized to the model's input, exactly as :func:`zoom_in` does."""
    patches = crop(
        photo[None].expand(windows.shape[0], -1, -1, -1), windows, preprocessing.size
    )
    return probabilities(model, preprocessing.normalize(patches))
