"""CAM methods: each a small function from captured tensors to raw maps, joined by one registry line.

A method receives a :class:`MethodInputs` for one layer and returns raw maps ``[B, T, h, w]`` for
the T classes asked of each image (before ReLU, upsampling and normalisation). This module holds
the registry, CAM and the gradient family; :mod:`camlib.perturbation` holds the methods that run
the network again (Score-CAM, Ablation-CAM).

Notation: ``f_k`` the K feature maps of the layer (``activations`` [B, K, h, w]); ``S_c`` the logit
of class ``c``; ``g_k = d S_c / d f_k`` its gradient (``gradients`` [B, T, K, h, w]); ``M_c``
the map.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class LinearHead:
    """The classifier after global average pooling: ``logits = GAP(f) @ weight.T + bias``.

    ``relu_first`` marks heads that apply a ReLU between the layer and the pooling (DenseNet):
    the pooled feature maps are then ``relu(layer output)``.
    """

    weight: Tensor  # [num_classes, K]: row c is w^c
    bias: Tensor | None  # [num_classes]
    relu_first: bool = False

    def pooled_features(self, activations: Tensor) -> Tensor:
        return activations.clamp_min(0) if self.relu_first else activations


@dataclass(frozen=True)
class MethodInputs:
    """What a method may use; optional fields are filled for methods registered as needing them."""

    activations: Tensor  # [B, K, h, w]: the layer's K feature maps f_k
    classes: Tensor  # [B, T]: T classes c per image
    gradients: Tensor | None = None  # [B, T, K, h, w]: d S_c / d f_k
    head: LinearHead | None = None  # needs_head; or wants_head, when the layer feeds one
    logits: Tensor | None = None  # [B, num_classes]: S of the unchanged images
    images: Tensor | None = None  # [B, C, H, W]: the input (needs_forward)
    # images [N, C, H, W] -> logits [N, num_classes], eval mode, no graph (needs_forward)
    forward: Callable[[Tensor], Tensor] | None = None
    # needs_forward: a dict kept per model across calls, for choices worth remembering
    memory: dict | None = None
    # replacement layer outputs [B, n, K, h, w] -> logits [B, n, num_classes]: the network from
    # this layer onward, with the layer's output replaced by each of the n variants (needs_tail)
    tail: Callable[[Tensor], Tensor] | None = None
    batch_size: int | None = None  # rows per extra forward pass; None: the method decides
    progress: bool = False  # show a progress bar over the extra forward passes


@dataclass(frozen=True)
class Method:
    name: str
    compute: Callable[[MethodInputs], Tensor]
    needs_gradients: bool = False
    needs_head: bool = False
    needs_forward: bool = False
    needs_tail: bool = False
    wants_head: bool = False  # the GAP + linear head if the layer feeds one, else None


METHODS: dict[str, Method] = {}


def register(
    name: str,
    *,
    needs_gradients: bool = False,
    needs_head: bool = False,
    needs_forward: bool = False,
    needs_tail: bool = False,
    wants_head: bool = False,
):
    """Decorator that adds a method to :data:`METHODS` under ``name``."""

    def add(compute: Callable[[MethodInputs], Tensor]) -> Callable[[MethodInputs], Tensor]:
        METHODS[name] = Method(
            name, compute, needs_gradients, needs_head, needs_forward, needs_tail, wants_head
        )
        return compute

    return add


def get_method(name: object) -> Method:
    if not isinstance(name, str) or name not in METHODS:
        raise ValueError(f"method: expected one of {list(METHODS)}, got {name!r}")
    return METHODS[name]


def weighted_sum(activations: Tensor, channel_weights: Tensor) -> Tensor:
    """``M_c = sum_k w_k^c f_k``: activations [B, K, h, w], weights [B, T, K] -> [B, T, h, w]."""
    return torch.einsum("bkhw,btk->bthw", activations, channel_weights)


@register("cam", needs_head=True)
def cam(inputs: MethodInputs) -> Tensor:
    """Zhou et al. (2016): ``M_c(x, y) = sum_k w_k^c f_k(x, y)``, all T classes in one
    einsum.

    ``w^c`` is row ``c`` of the linear classifier that follows global average pooling,
    so the spatial mean of ``M_c`` plus the bias is exactly the logit of class ``c``.
    """
    assert inputs.head is not None
    class_weights = inputs.head.weight[inputs.classes]  # [B, T, K]
    features = inputs.head.pooled_features(inputs.activations)
    return weighted_sum(features, class_weights)


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


def first_component(activations: Tensor, centre: bool = False) -> Tensor:
    """Projection of each position's K-vector onto the first right singular vector.

    activations [B, K, h, w] -> [B, h, w]; ``X`` is the [h w, K] matrix of one image,
    ``v_1`` the first right singular vector of ``X`` (of ``X - mean`` with ``centre``), the result
    ``X v_1``, with the sign left as the SVD returns it.
    """
    x = activations.flatten(2).transpose(1, 2)  # [B, hw, K]
    if centre:
        x = x - x.mean(dim=1, keepdim=True)
    x = x if x.dtype == torch.float64 else x.float()
    _, _, vh = torch.linalg.svd(x, full_matrices=False)  # vh [B, min(hw, K), K]
    projection = (x @ vh[:, 0, :, None]).squeeze(-1)  # [B, hw]
    return projection.to(activations.dtype).reshape(activations.shape[0], *activations.shape[-2:])


@register("eigencam")
def eigencam(inputs: MethodInputs) -> Tensor:
    """Eigen-CAM, Muhammad & Yeasin (2020): activations projected on their first component.

    ``M = X v_1`` where ``X`` is the [h w, K] matrix of ``f`` and ``v_1`` its first right singular
    vector, as in the paper (not centred; pytorch-grad-cam centres ``X`` first). An SVD fixes
    ``v_1`` only up to sign; the sign is chosen so that ``M`` correlates positively with
    ``sum_k f_k``. Class-agnostic: every class asked gets the same map.
    """
    projection = first_component(inputs.activations)  # [B, h, w]
    total = inputs.activations.sum(dim=1)
    p = projection.flatten(1) - projection.flatten(1).mean(1, keepdim=True)
    t = total.flatten(1) - total.flatten(1).mean(1, keepdim=True)
    sign = torch.where((p * t).sum(1) < 0, -1.0, 1.0).to(projection.dtype)
    maps = projection * sign[:, None, None]
    return maps[:, None].repeat(1, inputs.classes.shape[1], 1, 1)


from . import perturbation  # noqa: E402,F401  (registers scorecam and ablationcam)
