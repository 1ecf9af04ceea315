"""Sample photos: real pictures that ship with scikit-image (no download)."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .models import Preprocessing

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")


def photo(name: str) -> Tensor:
    """One scikit-image photo as RGB ``[3, H, W]`` floats in [0, 1]."""
    from skimage import data

    if name not in PHOTOS:
        raise ValueError(f"photo: expected one of {PHOTOS}, got {name!r}")
    pixels = torch.from_numpy(getattr(data, name)().copy())
    return pixels.permute(2, 0, 1).float() / 255


def photo_batch(
    names: Sequence[str] = PHOTOS, preprocessing: Preprocessing | None = None
) -> tuple[Tensor, Tensor]:
    """``(display, inputs)``: resized RGB in [0, 1] for figures and normalised model inputs,
    both ``[B, 3, size, size]``."""
    prep = preprocessing or Preprocessing()
    display = torch.cat([prep.resize(photo(name)[None]) for name in names])
    return display, prep.normalize(display)
