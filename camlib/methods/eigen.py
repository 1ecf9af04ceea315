"""Eigen-CAM: the first principal direction of the activations, class-agnostic."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import MethodInputs, register


def first_component(activations: Tensor, centre: bool = False) -> Tensor:
    """Projection of each position's K-vector onto the first right singular vector.

    Args:
        activations: ``[B, K, h, w]``; one image's ``X`` is its ``[hw, K]`` matrix.
        centre: subtract the mean over positions from ``X`` first.

    Returns:
        ``[B, h, w]``: :math:`X v_1` with :math:`v_1` the first right singular vector of
        :math:`X`, its sign as the SVD returns it.
    """
    x = activations.flatten(2).transpose(1, 2)  # [B, hw, K]
    if centre:
        x = x - x.mean(dim=1, keepdim=True)
    x = x if x.dtype == torch.float64 else x.float()
    _, _, vh = torch.linalg.svd(x, full_matrices=False)  # vh [B, min(hw, K), K]
    projection = (x @ vh[:, 0, :, None]).squeeze(-1)  # [B, hw]
    return projection.to(activations.dtype).reshape(
        activations.shape[0], *activations.shape[-2:]
    )


@register("eigencam")
def eigencam(inputs: MethodInputs) -> Tensor:
    r"""Eigen-CAM, Muhammad & Yeasin (2020): the activations projected on their first
    principal direction.

    .. math:: M = X v_1

    :math:`X` is the :math:`hw \times K` matrix of the activations and :math:`v_1` its
    first right singular vector, as in the paper (not centred; pytorch-grad-cam centres
    :math:`X` first). An SVD fixes :math:`v_1` only up to sign; the sign is chosen so
    that :math:`M` correlates positively with :math:`\sum_k f_k`. Class-agnostic: every
    class asked gets the same map.

    Args:
        inputs: the layer's activations ``[B, K, h, w]`` and the classes ``[B, T]``.

    Returns:
        Raw maps ``[B, T, h, w]``, one per class asked of each image.
    """
    projection = first_component(inputs.activations)  # [B, h, w]
    total = inputs.activations.sum(dim=1)
    p = projection.flatten(1) - projection.flatten(1).mean(1, keepdim=True)
    t = total.flatten(1) - total.flatten(1).mean(1, keepdim=True)
    sign = torch.where((p * t).sum(1) < 0, -1.0, 1.0).to(projection.dtype)
    maps = projection * sign[:, None, None]
    return maps[:, None].repeat(1, inputs.classes.shape[1], 1, 1)
