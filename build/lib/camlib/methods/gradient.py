"""The gradient family: channel or pixel weights from the gradient of the class score."""
from __future__ import annotations

import torch
from torch import Tensor

from .base import MethodInputs, register, weighted_sum


@register("gradcam", needs_gradients=True)
def gradcam(inputs: MethodInputs) -> Tensor:
    """Selvaraju et al. (2017): channel weights are the spatially averaged gradients of
    the logit.

    ``alpha_k^c = mean_{x,y} d S_c / d f_k(x, y)`` and ``M_c = sum_k alpha_k^c f_k``.
    For a GAP + linear head the gradient is ``w_k^c / (h w)`` everywhere, so
    Grad-CAM = CAM / (h w).
    """
    assert inputs.gradients is not None
    channel_weights = inputs.gradients.mean(dim=(-2, -1))  # [B, T, K]
    return weighted_sum(inputs.activations, channel_weights)


@register("gradcampp", needs_gradients=True)
def gradcampp(inputs: MethodInputs) -> Tensor:
    """Grad-CAM++, Chattopadhay et al. (2018), in closed form under the exponential assumption.

    With ``Y_c = exp(S_c)`` the higher derivatives of ``Y_c`` are powers of ``g = d S_c / d f_k``
    (times ``Y_c``), and the pixel weights become
    ``alpha_k^c(x, y) = g^2 / (2 g^2 + sum_{a,b} f_k(a, b) g^3)`` (0 where ``g = 0``);
    ``w_k^c = sum_{x,y} alpha_k^c(x, y) relu(g(x, y))`` and ``M_c = sum_k w_k^c f_k``. The common
    factor ``Y_c`` of the weights is dropped: it scales the map, not its shape.
    """
    assert inputs.gradients is not None
    g = inputs.gradients  # [B, T, K, h, w]
    g2 = g * g
    totals = inputs.activations.sum(dim=(-2, -1))[:, None, :, None, None]  # [B, 1, K, 1, 1]
    denominator = 2 * g2 + totals * g2 * g
    usable = (g != 0) & (denominator != 0)
    alpha = torch.where(usable, g2 / torch.where(usable, denominator, torch.ones_like(g)), 0.0)
    channel_weights = (alpha * g.clamp_min(0)).sum(dim=(-2, -1))  # [B, T, K]
    return weighted_sum(inputs.activations, channel_weights)


@register("xgradcam", needs_gradients=True)
def xgradcam(inputs: MethodInputs) -> Tensor:
    """XGrad-CAM, Fu et al. (2020): ``w_k^c = sum_{x,y} f_k g_k / sum_{x,y} f_k``.

    ``M_c = sum_k w_k^c f_k``; a channel whose activations sum to 0 gets weight 0. For a GAP +
    linear head ``g_k = w_k^c / (h w)`` everywhere, so XGrad-CAM = Grad-CAM = CAM / (h w).
    """
    assert inputs.gradients is not None
    f = inputs.activations
    numerator = torch.einsum("bkhw,btkhw->btk", f, inputs.gradients)
    totals = f.sum(dim=(-2, -1))[:, None, :]  # [B, 1, K]
    nonzero = totals != 0
    channel_weights = torch.where(nonzero, numerator / torch.where(nonzero, totals, 1.0), 0.0)
    return weighted_sum(f, channel_weights)


@register("layercam", needs_gradients=True)
def layercam(inputs: MethodInputs) -> Tensor:
    """LayerCAM, Jiang et al. (2021): each position weighs itself, ``M_c = sum_k relu(g_k) f_k``."""
    assert inputs.gradients is not None
    return torch.einsum("bkhw,btkhw->bthw", inputs.activations, inputs.gradients.clamp_min(0))


@register("hirescam", needs_gradients=True)
def hirescam(inputs: MethodInputs) -> Tensor:
    """HiResCAM, Draelos & Carin (2020): ``M_c = sum_k g_k * f_k``, gradient times activation.

    For a GAP + linear head its spatial sum is ``S_c - b_c``; there it equals CAM / (h w).
    """
    assert inputs.gradients is not None
    return torch.einsum("bkhw,btkhw->bthw", inputs.activations, inputs.gradients)
