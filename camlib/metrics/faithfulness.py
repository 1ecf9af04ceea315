"""Faithfulness: does removing what the map points at change the model's mind?

- :func:`perturbation_curve`: deletion and insertion curves and their AUC (Petsiuk et
  al. 2018);
- :func:`confidence_change`: average drop and increase in confidence (Chattopadhay et
  al. 2018).

Maps are ``[B, H, W]``, one per image for the class ``c`` of that image. Model-based
metrics run batched forwards on the images' device, under ``torch.no_grad``, and leave
the model's training flags as they were. Scores are probabilities ``P_c`` (softmax of
the logits).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..capture import model_state_preserved
from ..explain import logits_of
from .inputs import check_inputs, class_probabilities

BASELINES = ("zero", "mean", "blur")


def baseline_images(
    images: Tensor, kind: str = "zero", sigma: float = 5.0, kernel: int = 11
) -> Tensor:
    """What removed pixels become: ``zero`` (all zeros: for normalised inputs, the data
    set's mean colour), ``mean`` (each image's own mean per channel) or ``blur`` (a
    Gaussian blur of the image, ``kernel`` taps, ``sigma`` pixels: Petsiuk et al. use 11
    and 5)."""
    if kind == "zero":
        return torch.zeros_like(images)
    if kind == "mean":
        return images.mean(dim=(-2, -1), keepdim=True).expand_as(images).clone()
    if kind == "blur":
        from torchvision.transforms.functional import gaussian_blur

        return gaussian_blur(images, [kernel, kernel], [sigma, sigma])
    raise ValueError(f"baseline: expected one of {BASELINES}, got {kind!r}")


# --- deletion and insertion -----------------------------------------------------------


@dataclass(frozen=True)
class Curves:
    """Deletion or insertion curves: ``scores[b, s]`` is ``P_c`` of image ``b`` once the
    first ``fractions[s]`` of its pixels (in the map's order) are removed (deletion) or
    inserted."""

    mode: str
    fractions: Tensor  # [S + 1], from 0 to 1
    scores: Tensor  # [B, S + 1]
    auc: Tensor  # [B]: trapezoid rule over the fraction axis
    classes: Tensor  # [B]


def pixel_order(maps: Tensor) -> Tensor:
    """Flat pixel indices ``[B, H * W]`` by descending map value; ties in row-major
    order."""
    return torch.sort(maps.flatten(1), dim=1, descending=True, stable=True).indices


def step_counts(
    pixels: int, steps: int | None = None, pixels_per_step: int | None = None
) -> Tensor:
    """How many pixels are changed after each step: ``round(s * P / S)`` for ``steps``
    S, or ``min(s * n, P)`` for ``pixels_per_step`` n (then S = ceil(P / n)); starts at
    0, ends at P."""
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
    """Petsiuk et al.'s deletion (``P_c`` as the most important pixels are replaced by
    the baseline; lower AUC is better) or insertion (``P_c`` as they are put back into
    the baseline image; higher is better). ``classes``: default the predicted class.

    All ``B * (S + 1)`` perturbed images go through the model in forwards of
    ``max_batch``, each built on the fly from the pixel ranks, so memory is bounded by
    ``max_batch`` images.
    """
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"mode: expected 'deletion' or 'insertion', got {mode!r}")
    if pixels_per_step is not None:
        steps = None
    maps, _, chosen = check_inputs(model, images, maps, classes, max_batch)
    batch, height, width = maps.shape
    pixels = height * width
    counts = step_counts(pixels, steps, pixels_per_step).to(images.device)
    fill = baseline_images(images, baseline)
    order = pixel_order(maps)
    rank = torch.empty_like(order)  # rank[b, p]: when pixel p of image b is changed
    rank.scatter_(
        1, order, torch.arange(pixels, device=maps.device).expand(batch, pixels)
    )
    rows = batch * counts.shape[0]
    scores = torch.empty(rows, device=images.device)
    with torch.no_grad(), model_state_preserved(model):
        for start in range(0, rows, max_batch):
            index = torch.arange(
                start, min(start + max_batch, rows), device=images.device
            )
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
    return Curves(
        mode, fractions, scores, torch.trapezoid(scores, fractions, dim=1), chosen
    )


# --- confidence -----------------------------------------------------------------------


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
    model: nn.Module,
    images: Tensor,
    maps: Tensor,
    classes: object = None,
    max_batch: int = 128,
) -> ConfidenceChange:
    """Multiply the model's input by the map (clamped to [0, 1], image-sized) and
    compare ``P_c`` with the original's. As in pytorch-grad-cam, the input tensor is
    multiplied as given (normalised inputs then fade towards the data set's mean
    colour)."""
    maps, before, chosen = check_inputs(model, images, maps, classes, max_batch)
    masked = images * maps.clamp(0, 1)[:, None]
    after, _ = class_probabilities(model, masked, chosen, max_batch)
    drop = (before - after).clamp_min(0) / before * 100
    return ConfidenceChange(before, after, drop, after > before, chosen)
