"""Checks shared by the metrics: maps at the images' size, class probabilities."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .. import checks
from ..capture import model_state_preserved
from ..explain import logits_of
from ..postprocess import upsample


def image_maps(maps: object, images: Tensor, reference: str = "images") -> Tensor:
    """Maps as ``[B, H, W]`` at the images' size: ``[B, H, W]`` or ``[B, 1, H, W]``
    accepted, other sizes upsampled bilinearly. Refused: other dtypes, batch sizes or
    devices than the ``images`` (or masks: ``reference``), NaN or Inf, an empty
    batch."""
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
    model: nn.Module,
    images: Tensor,
    classes: Tensor | None = None,
    max_batch: int = 128,
) -> tuple[Tensor, Tensor]:
    """``(P_c [N], c [N])``: probability of ``classes`` (default: the predicted ones),
    in forwards of at most ``max_batch`` images."""
    scores, chosen = [], []
    with torch.no_grad(), model_state_preserved(model):
        for start in range(0, images.shape[0], max_batch):
            probs = logits_of(model(images[start : start + max_batch])).softmax(dim=1)
            part = (
                probs.argmax(1)
                if classes is None
                else classes[start : start + max_batch]
            )
            checks.check_class_range(part, probs.shape[1])
            chosen.append(part)
            scores.append(probs.gather(1, part[:, None])[:, 0])
    return torch.cat(scores), torch.cat(chosen)


def class_column(classes: object, images: Tensor) -> Tensor | None:
    """``classes`` as one class per image [B], or None (the predicted classes)."""
    rows = checks.classes_as_rows(classes, images.shape[0], images.device)
    if rows is not None and rows.shape[1] != 1:
        raise ValueError(
            "classes: expected one class per image, [B] or [B, 1], got "
            f"{tuple(rows.shape)}"
        )
    return None if rows is None else rows[:, 0]


def check_inputs(
    model: nn.Module, images: Tensor, maps: object, classes: object, max_batch: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Checked ``(maps [B, H, W], P_c [B], c [B])`` for a model-based metric."""
    images = checks.check_images(model, images)
    maps = image_maps(maps, images)
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
        raise ValueError(f"max_batch: expected a positive int, got {max_batch!r}")
    before, chosen = class_probabilities(
        model, images, class_column(classes, images), max_batch
    )
    return maps, before, chosen
