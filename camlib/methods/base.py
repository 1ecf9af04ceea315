"""The method registry and what a method receives.

A method is one function from a :class:`MethodInputs` for one layer to raw maps
``[B, T, h, w]`` for the T classes asked of each image (before ReLU, upsampling and
normalisation), added to ``METHODS`` by one :func:`register` line. The families live
beside this module: :mod:`~camlib.methods.activation` (CAM),
:mod:`~camlib.methods.gradient`, :mod:`~camlib.methods.eigen` and
:mod:`~camlib.methods.perturbation`.

Notation: ``f_k`` the K feature maps of the layer (``activations`` [B, K, h, w]);
``S_c`` the logit of class ``c``; ``g_k = d S_c / d f_k`` its gradient (``gradients``
[B, T, K, h, w]); ``M_c`` the map.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class LinearHead:
    """The classifier after global average pooling: ``logits = GAP(f) @ weight.T +
    bias``.

    ``relu_first`` marks heads that apply a ReLU between the layer and the pooling
    (DenseNet): the pooled feature maps are then ``relu(layer output)``.
    """

    weight: Tensor  # [num_classes, K]: row c is w^c
    bias: Tensor | None  # [num_classes]
    relu_first: bool = False

    def pooled_features(self, activations: Tensor) -> Tensor:
        return activations.clamp_min(0) if self.relu_first else activations


@dataclass(frozen=True)
class MethodInputs:
    """What a method may use; optional fields are filled for methods registered as
    needing them."""

    # [B, K, h, w]: the layer's K feature maps f_k, whatever the layer's own layout
    activations: Tensor
    classes: Tensor  # [B, T]: T classes c per image
    gradients: Tensor | None = None  # [B, T, K, h, w]: d S_c / d f_k
    # needs_head; or wants_head, when the layer feeds one
    head: LinearHead | None = None
    logits: Tensor | None = None  # [B, num_classes]: S of the unchanged images
    images: Tensor | None = None  # [B, C, H, W]: the input (needs_forward)
    # images [N, C, H, W] -> logits [N, num_classes], eval mode, no graph
    # (needs_forward)
    forward: Callable[[Tensor], Tensor] | None = None
    # tail(outputs [n, K, h, w], rows [n]) -> logits [n, num_classes]: the network from
    # this layer onward, run with row i of the batch's layer output replaced by
    # outputs[i] (the image it belongs to is rows[i]); a context manager around a series
    # of calls (needs_tail)
    tail: Callable[[Tensor, Tensor], Tensor] | None = None
    # rows per extra forward pass; None: the method decides
    batch_size: int | None = None
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
    """Decorator that adds a method to ``METHODS`` under ``name``."""

    def add(
        compute: Callable[[MethodInputs], Tensor],
    ) -> Callable[[MethodInputs], Tensor]:
        METHODS[name] = Method(
            name,
            compute,
            needs_gradients,
            needs_head,
            needs_forward,
            needs_tail,
            wants_head,
        )
        return compute

    return add


def get_method(name: object) -> Method:
    """The registered method called ``name``.

    Raises:
        TypeError: ``name`` is not a string.
        ValueError: no method of that name is registered.
    """
    if not isinstance(name, str):
        raise TypeError(
            f"method: expected a method name (str), got {type(name).__name__}"
        )
    if name not in METHODS:
        raise ValueError(f"method: expected one of {list(METHODS)}, got {name!r}")
    return METHODS[name]


def weighted_sum(activations: Tensor, channel_weights: Tensor) -> Tensor:
    """``M_c = sum_k w_k^c f_k``: activations [B, K, h, w], weights [B, T, K] -> [B, T,
    h, w]."""
    return torch.einsum("bkhw,btk->bthw", activations, channel_weights)


def find_linear_head(
    model: nn.Module, layer: str, features: Tensor, logits: Tensor
) -> LinearHead:
    """The linear classifier that maps GAP(features) to the logits, checked on this
    batch."""
    channels, num_classes = features.shape[1], logits.shape[1]
    candidates = [
        m
        for m in model.modules()
        if isinstance(m, nn.Linear)
        and m.in_features == channels
        and m.out_features == num_classes
    ]
    if candidates:
        layer_module = candidates[-1]
        scale = logits.detach().abs().amax().clamp_min(1.0)
        for relu_first in (False, True):
            head = LinearHead(
                layer_module.weight.detach(), _detached(layer_module.bias), relu_first
            )
            pooled = head.pooled_features(features.detach()).mean(dim=(-2, -1))
            predicted = torch.nn.functional.linear(pooled, head.weight, head.bias)
            if bool((predicted - logits.detach()).abs().amax() <= 1e-3 * scale):
                return head
    raise ValueError(
        f"method 'cam' needs layer {layer!r} to feed global average pooling "
        "and then one linear "
        f"classifier ({channels} -> {num_classes} classes); this model's head "
        "is not of that form. "
        "Use method='gradcam', which works for any differentiable head."
    )


def _detached(tensor: Tensor | None) -> Tensor | None:
    return None if tensor is None else tensor.detach()
