"""ROAD, remove and debias (Rong et al. 2022): delete pixels in the map's order, but
fill them by linear imputation from their neighbours, so that the filled pixels do not
tell the model where the removed ones were (the class leakage of plain deletion).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..capture import model_state_preserved
from ..explain import logits_of
from .faithfulness import Curves, pixel_order
from .inputs import check_inputs


# Rong et al.'s neighbour weights: 1/6 for the four edge neighbours, 1/12 for the
# diagonals.
_NEIGHBOURS = ((1 / 12, 1 / 6, 1 / 12), (1 / 6, 0.0, 1 / 6), (1 / 12, 1 / 6, 1 / 12))


def linear_imputation(
    images: Tensor,
    removed: Tensor,
    noise: float = 0.0,
    generator: torch.Generator | None = None,
    tolerance: float = 1e-7,
    max_iterations: int = 10_000,
) -> Tensor:
    """Rong et al.'s linear imputation: every ``removed`` pixel ([B, H, W] bool) becomes
    the weighted mean of its 8 neighbours in the image (known or themselves imputed),
    per channel, plus Gaussian ``noise``. The linear system (symmetric, positive
    definite wherever a hole touches a known pixel) is solved for all images and
    channels at once by conjugate gradients, on the images' device."""
    if not isinstance(removed, Tensor) or removed.dtype != torch.bool:
        got = (
            f"dtype {removed.dtype}"
            if isinstance(removed, Tensor)
            else type(removed).__name__
        )
        raise TypeError(f"removed: expected a bool mask [B, H, W], got {got}")
    if removed.shape != (images.shape[0], *images.shape[-2:]):
        raise ValueError(
            f"removed: expected a mask [{images.shape[0]}, H, W] like the images, "
            f"got {tuple(removed.shape)}"
        )
    channels = images.shape[1]
    hole = removed[:, None].to(images.dtype)
    kernel = torch.tensor(_NEIGHBOURS, dtype=images.dtype, device=images.device).expand(
        channels, 1, 3, 3
    )

    def neighbours(values: Tensor) -> Tensor:
        return F.conv2d(values, kernel, padding=1, groups=channels)

    weight_sum = neighbours(torch.ones_like(images[:1]))  # smaller at the borders

    def operator(values: Tensor) -> Tensor:
        return hole * (weight_sum * values - neighbours(values * hole))

    rhs = hole * neighbours(images * (1 - hole))
    solution, residual = torch.zeros_like(images), rhs.clone()
    direction = residual.clone()
    norm = residual.square().sum(dim=(-2, -1), keepdim=True)
    target = norm * tolerance**2
    for iteration in range(max_iterations):
        applied = operator(direction)
        curvature = (direction * applied).sum(dim=(-2, -1), keepdim=True)
        step = torch.where(
            curvature > 0, norm / curvature.clamp_min(torch.finfo(images.dtype).tiny), 0
        )
        solution += step * direction
        residual -= step * applied
        new_norm = residual.square().sum(dim=(-2, -1), keepdim=True)
        if iteration % 10 == 9 and bool((new_norm <= target).all()):
            break
        direction = (
            residual
            + torch.where(
                norm > 0, new_norm / norm.clamp_min(torch.finfo(images.dtype).tiny), 0
            )
            * direction
        )
        norm = new_norm
    if noise:
        solution = solution + noise * torch.randn(images.shape, generator=generator).to(
            images
        )
    return torch.where(removed[:, None], solution, images)


def road(
    model: nn.Module,
    images: Tensor,
    maps: Tensor,
    classes: object = None,
    order: str = "morf",
    fractions: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(1, 10)),
    noise: float = 0.01,
    seed: int = 0,
    max_batch: int = 128,
) -> Curves:
    """ROAD (Rong et al. 2022): ``P_c`` after removing the ``fractions`` of pixels with
    the highest (``morf``: most relevant first) or lowest (``lerf``) map values, with
    the removed pixels filled by :func:`linear_imputation` (noise drawn from ``seed``).
    ``auc`` is the trapezoid over the given fractions. MoRF falls fast and LeRF slowly
    for a good map."""
    if order not in ("morf", "lerf"):
        raise ValueError(f"order: expected 'morf' or 'lerf', got {order!r}")
    fractions = tuple(fractions)
    if not fractions or not all(
        isinstance(f, (int, float)) and not isinstance(f, bool) and 0 <= f <= 1
        for f in fractions
    ):
        raise ValueError(
            f"fractions: expected one or more numbers in [0, 1], got {fractions}"
        )
    if not isinstance(noise, (int, float)) or not 0 <= noise < math.inf:
        raise ValueError(f"noise: expected a finite number >= 0, got {noise!r}")
    maps, _, chosen = check_inputs(model, images, maps, classes, max_batch)
    batch, height, width = maps.shape
    pixels = height * width
    ranking = pixel_order(maps if order == "morf" else -maps)
    rank = torch.empty_like(ranking)
    rank.scatter_(
        1, ranking, torch.arange(pixels, device=maps.device).expand(batch, pixels)
    )
    counts = torch.tensor([round(f * pixels) for f in fractions], device=images.device)
    generator = torch.Generator().manual_seed(seed)
    rows = batch * counts.shape[0]
    scores = torch.empty(rows, device=images.device)
    with torch.no_grad(), model_state_preserved(model):
        for start in range(0, rows, max_batch):
            index = torch.arange(
                start, min(start + max_batch, rows), device=images.device
            )
            image, step = index // counts.shape[0], index % counts.shape[0]
            removed = (rank[image] < counts[step][:, None]).view(-1, height, width)
            imputed = linear_imputation(images[image], removed, noise, generator)
            probs = logits_of(model(imputed)).softmax(dim=1)
            scores[index] = probs.gather(1, chosen[image][:, None])[:, 0]
    scores = scores.view(batch, counts.shape[0])
    axis = torch.tensor(fractions, dtype=scores.dtype, device=scores.device)
    return Curves(order, axis, scores, torch.trapezoid(scores, axis, dim=1), chosen)
