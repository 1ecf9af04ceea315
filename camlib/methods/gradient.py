"""The gradient family: channel or pixel weights from the gradient of the class
score."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import MethodInputs, register, weighted_sum


@register("gradcam", needs_gradients=True)
def gradcam(inputs: MethodInputs) -> Tensor:
    r"""Grad-CAM, Selvaraju et al. (2017): channel weights are the spatially averaged
    gradients of the class score.

    .. math::

        \alpha^c_k = \frac{1}{hw}\sum_{i,j} g^c_k(i, j), \qquad
        M_c = \sum_k \alpha^c_k f_k, \qquad g^c_k = \frac{\partial S_c}{\partial f_k}

    For a layer that feeds GAP + linear, :math:`g^c_k = w^c_k / (hw)` everywhere, so
    Grad-CAM = CAM / :math:`hw`.

    Args:
        inputs: the layer's activations ``[B, K, h, w]``, the gradients
            ``[B, T, K, h, w]`` and the classes ``[B, T]``.

    Returns:
        Raw maps ``[B, T, h, w]``, one per class asked of each image.
    """
    assert inputs.gradients is not None
    channel_weights = inputs.gradients.mean(dim=(-2, -1))  # [B, T, K]
    return weighted_sum(inputs.activations, channel_weights)


@register("gradcampp", needs_gradients=True)
def gradcampp(inputs: MethodInputs) -> Tensor:
    r"""Grad-CAM++, Chattopadhay et al. (2018), in closed form under the exponential
    assumption :math:`Y_c = e^{S_c}`.

    The higher derivatives of :math:`Y_c` are then powers of :math:`g = g^c_k(i, j)`
    times :math:`Y_c`, and

    .. math::

        a^c_k(i, j) = \frac{g^2}{2 g^2 + \sum_{a,b} f_k(a, b)\, g^3}, \qquad
        \alpha^c_k = \sum_{i,j} a^c_k(i, j)\, \max(g^c_k(i, j), 0), \qquad
        M_c = \sum_k \alpha^c_k f_k

    (:math:`a = 0` where :math:`g = 0`). The common factor :math:`Y_c` is dropped: it
    scales the map, not its shape. At a layer that feeds GAP + linear, :math:`g` is the
    same at every position, so the pixel weights are uniform too.

    Args:
        inputs: the layer's activations ``[B, K, h, w]``, the gradients
            ``[B, T, K, h, w]`` and the classes ``[B, T]``.

    Returns:
        Raw maps ``[B, T, h, w]``, one per class asked of each image.
    """
    assert inputs.gradients is not None
    g = inputs.gradients  # [B, T, K, h, w]
    g2 = g * g
    totals = inputs.activations.sum(dim=(-2, -1))[
        :, None, :, None, None
    ]  # [B, 1, K, 1, 1]
    denominator = 2 * g2 + totals * g2 * g
    usable = (g != 0) & (denominator != 0)
    alpha = torch.where(
        usable, g2 / torch.where(usable, denominator, torch.ones_like(g)), 0.0
    )
    channel_weights = (alpha * g.clamp_min(0)).sum(dim=(-2, -1))  # [B, T, K]
    return weighted_sum(inputs.activations, channel_weights)


@register("xgradcam", needs_gradients=True)
def xgradcam(inputs: MethodInputs) -> Tensor:
    r"""XGrad-CAM, Fu et al. (2020): gradients weighted by the activations.

    .. math::

        \alpha^c_k = \frac{\sum_{i,j} f_k(i, j)\, g^c_k(i, j)}{\sum_{i,j} f_k(i, j)},
        \qquad M_c = \sum_k \alpha^c_k f_k

    A channel whose activations sum to 0 gets weight 0. At a layer that feeds GAP +
    linear, XGrad-CAM = Grad-CAM = CAM / :math:`hw`.

    Args:
        inputs: the layer's activations ``[B, K, h, w]``, the gradients
            ``[B, T, K, h, w]`` and the classes ``[B, T]``.

    Returns:
        Raw maps ``[B, T, h, w]``, one per class asked of each image.
    """
    assert inputs.gradients is not None
    f = inputs.activations
    numerator = torch.einsum("bkhw,btkhw->btk", f, inputs.gradients)
    totals = f.sum(dim=(-2, -1))[:, None, :]  # [B, 1, K]
    nonzero = totals != 0
    channel_weights = torch.where(
        nonzero, numerator / torch.where(nonzero, totals, 1.0), 0.0
    )
    return weighted_sum(f, channel_weights)


@register("layercam", needs_gradients=True)
def layercam(inputs: MethodInputs) -> Tensor:
    r"""LayerCAM, Jiang et al. (2021): each position weighs itself by its positive
    gradient.

    .. math:: M_c(i, j) = \sum_k \max(g^c_k(i, j), 0)\, f_k(i, j)

    Args:
        inputs: the layer's activations ``[B, K, h, w]``, the gradients
            ``[B, T, K, h, w]`` and the classes ``[B, T]``.

    Returns:
        Raw maps ``[B, T, h, w]``, one per class asked of each image.
    """
    assert inputs.gradients is not None
    return torch.einsum(
        "bkhw,btkhw->bthw", inputs.activations, inputs.gradients.clamp_min(0)
    )


@register("hirescam", needs_gradients=True)
def hirescam(inputs: MethodInputs) -> Tensor:
    r"""HiResCAM, Draelos & Carin (2020): gradient times activation, position by
    position.

    .. math:: M_c(i, j) = \sum_k g^c_k(i, j)\, f_k(i, j)

    At a layer that feeds GAP + linear its sum over positions is :math:`S_c - b_c`, and
    it equals CAM / :math:`hw`.

    Args:
        inputs: the layer's activations ``[B, K, h, w]``, the gradients
            ``[B, T, K, h, w]`` and the classes ``[B, T]``.

    Returns:
        Raw maps ``[B, T, h, w]``, one per class asked of each image.
    """
    assert inputs.gradients is not None
    return torch.einsum("bkhw,btkhw->bthw", inputs.activations, inputs.gradients)
