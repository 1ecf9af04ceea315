"""CAM methods: each a small function from captured tensors to raw maps, joined by one registry line.

A method receives a :class:`MethodInputs` for one layer and returns raw maps ``[B, T, h, w]`` for the T classes asked of each image
(before ReLU, upsampling and normalisation).
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
    activations: Tensor  # [B, K, h, w]: the layer's K feature maps f_k
    classes: Tensor  # [B, T]: T classes c per image
    gradients: Tensor | None = None  # [B, T, K, h, w]: d S_c / d f_k
    head: LinearHead | None = None


@dataclass(frozen=True)
class Method:
    name: str
    compute: Callable[[MethodInputs], Tensor]
    needs_gradients: bool = False
    needs_head: bool = False


METHODS: dict[str, Method] = {}


def register(name: str, *, needs_gradients: bool = False, needs_head: bool = False):
    """Decorator that adds a method to :data:`METHODS` under ``name``."""

    def add(compute: Callable[[MethodInputs], Tensor]) -> Callable[[MethodInputs], Tensor]:
        METHODS[name] = Method(name, compute, needs_gradients, needs_head)
        return compute

    return add


def get_method(name: object) -> Method:
    if not isinstance(name, str) or name not in METHODS:
        raise ValueError(f"method: expected one of {sorted(METHODS)}, got {name!r}")
    return METHODS[name]


@register("cam", needs_head=True)
def cam(inputs: MethodInputs) -> Tensor:
    """Zhou et al. (2016): ``M_c(x, y) = sum_k w_k^c f_k(x, y)``, all T classes in one einsum.

    ``w^c`` is row ``c`` of the linear classifier that follows global average pooling, so the
    spatial mean of ``M_c`` plus the bias is exactly the logit of class ``c``.
    """
    assert inputs.head is not None
    class_weights = inputs.head.weight[inputs.classes]  # [B, T, K]
    features = inputs.head.pooled_features(inputs.activations)
    return torch.einsum("bkhw,btk->bthw", features, class_weights)


@register("gradcam", needs_gradients=True)
def gradcam(inputs: MethodInputs) -> Tensor:
    """Selvaraju et al. (2017): channel weights are the spatially averaged gradients of the logit.

    ``alpha_k^c = mean_{x,y} d S_c / d f_k(x, y)`` and ``M_c = sum_k alpha_k^c f_k``. For a
    GAP + linear head the gradient is ``w_k^c / (h w)`` everywhere, so Grad-CAM = CAM / (h w).
    """
    assert inputs.gradients is not None
    channel_weights = inputs.gradients.mean(dim=(-2, -1))  # [B, T, K]
    return torch.einsum("bkhw,btk->bthw", inputs.activations, channel_weights)
