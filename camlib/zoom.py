"""Controls for the real-photo zoom of Chapter 4: same-size windows that the map did not choose.

A CAM window is worth something only if it beats windows of the same size placed elsewhere:
cutting any square out of a wide photo also changes the object's size and shape in the input.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .crops import crop
from .enhance import probabilities


def sliding_windows(side: float, height: int, width: int, count: int = 8) -> Tensor:
    """``count`` square windows of ``side`` pixels, evenly spaced along the photo's longer axis
    (the first at one edge, the last at the other) and centred across the shorter one.
    Returns ``[count, 4]`` boxes (x0, y0, x1, y1) in the photo's pixels."""
    if count < 1 or not 0 < side <= min(height, width) + 1e-3:
        raise ValueError(f"sliding_windows: expected count >= 1 and 0 < side <= "
                         f"{min(height, width)}, got count={count}, side={side}")
    side = min(float(side), float(min(height, width)))  # a window may carry float rounding
    fractions = torch.linspace(0, 1, count) if count > 1 else torch.tensor([0.5])
    along = fractions * (max(height, width) - side)
    across = torch.full_like(along, (min(height, width) - side) / 2)
    x0, y0 = (along, across) if width >= height else (across, along)
    return torch.stack([x0, y0, x0 + side, y0 + side], dim=1)


def window_probabilities(model: nn.Module, photo: Tensor, windows: Tensor, preprocessing) -> Tensor:
    """Class probabilities ``[N, classes]`` of each window cut from ``photo`` ([3, H, W] in
    [0, 1]) and resized to the model's input, exactly as :func:`camlib.enhance.zoom_in` does."""
    patches = crop(photo[None].expand(windows.shape[0], -1, -1, -1), windows, preprocessing.size)
    return probabilities(model, preprocessing.normalize(patches))
