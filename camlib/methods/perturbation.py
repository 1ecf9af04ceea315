"""Methods that run the network again on changed inputs or changed layer outputs.

Score-CAM masks the input with each channel and reruns the whole network; Ablation-CAM
zeroes each channel and reruns the network from the layer onward only (see
:class:`camlib.capture.LayerSwap`), or, where the layer feeds global average pooling and
a linear classifier, computes every ablation in closed form. Both apply per layer:
asking for several layers multiplies their cost by the number of layers.
"""

from __future__ import annotations

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..postprocess import normalize, upsample
from .base import MethodInputs, register

# Score-CAM's masked images per forward pass unless batch_size says otherwise
SCORE_BATCH = 16
ABLATION_BYTES = (
    16 * 2**20
)  # ablated layer outputs per pass unless batch_size says otherwise


@register("scorecam", needs_forward=True)
def scorecam(inputs: MethodInputs) -> Tensor:
    r"""Score-CAM, Wang et al. (2020): a channel's weight is how much the class likes
    what it shows.

    .. math::

        H_k = \operatorname{minmax}(\operatorname{up}(f_k)), \qquad
        w_k^c = \operatorname{softmax}_k\, S_c(X \odot H_k), \qquad
        M_c = \sum_k w_k^c f_k

    (softmax over the K channels). That is K forward passes per image, run
    ``batch_size`` masked images at a time (default ``SCORE_BATCH``, 16) in one reused
    buffer, so the B x K masked images never exist at once. A constant channel gives an
    all-zero mask, hence the same all-zero image for every such channel of every image:
    it is scored once. The masked images keep the memory format of the input (pass
    channels-last images to a channels-last model to run the passes in that layout).

    Args:
        inputs: the layer's activations ``[B, K, h, w]``, the images and a forward
            function and the classes ``[B, T]``.

    Returns:
        Raw maps ``[B, T, h, w]``, one per class asked of each image.
    """
    assert (
        inputs.images is not None
        and inputs.forward is not None
        and inputs.logits is not None
    )
    f, images, classes = inputs.activations, inputs.images, inputs.classes
    flat = f.flatten(2)
    constant = flat.amax(2) == flat.amin(2)  # [B, K]
    scores = inputs.logits.new_zeros(*f.shape[:2], classes.shape[1])  # [B, K, T]
    if bool(constant.any()):
        zero_logits = inputs.forward(torch.zeros_like(images[:1]))[0]  # [num_classes]
        scores = torch.where(
            constant[..., None], zero_logits[classes][:, None, :], scores
        )
    pairs = (
        ~constant
    ).nonzero()  # [N, 2]: (image, channel) pairs that need a forward pass
    batch = min(inputs.batch_size or SCORE_BATCH, max(pairs.shape[0], 1))
    # One buffer of masked images for every chunk, in the input's memory format.
    buffer = torch.empty(
        (batch, *images.shape[1:]),
        dtype=images.dtype,
        device=images.device,
        memory_format=memory_format_of(images),
    )
    chunks = range(0, pairs.shape[0], batch)
    for start in tqdm(chunks, desc="Score-CAM", disable=not inputs.progress):
        b, k = pairs[start : start + batch].unbind(1)
        masks = normalize(upsample(f[b, k], tuple(images.shape[-2:])), inplace=True)
        # one image broadcasts over its masks; several are gathered row by row
        source = images if images.shape[0] == 1 else images.index_select(0, b)
        masked = torch.mul(
            source, masks[:, None].to(images.dtype), out=buffer[: b.numel()]
        )
        logits = inputs.forward(masked)
        scores[b, k] = logits.gather(1, classes[b]).to(scores.dtype)
    weights = scores.softmax(dim=1)  # over channels
    return torch.einsum("bkhw,bkt->bthw", f, weights.to(f.dtype))


def memory_format_of(images: Tensor) -> torch.memory_format:
    """``torch.channels_last`` for 4-D images stored channels-last (and not also plainly
    contiguous, as a single-channel or 1 x 1 image is), else
    ``torch.contiguous_format``."""
    if (
        images.dim() == 4
        and not images.is_contiguous()
        and images.is_contiguous(memory_format=torch.channels_last)
    ):
        return torch.channels_last
    return torch.contiguous_format


@register("ablationcam", needs_tail=True, wants_head=True)
def ablationcam(inputs: MethodInputs) -> Tensor:
    r"""Ablation-CAM, Desai & Ramaswamy (2020): a channel's weight is the share of the
    class score lost when it is zeroed.

    .. math::

        \alpha^c_k = \frac{S_c - S_c^{(k)}}{S_c}, \qquad M_c = \sum_k \alpha^c_k f_k

    :math:`S_c^{(k)}` is the class score with channel :math:`k` of the layer set to
    zero. Where the layer feeds global average pooling and one linear layer (checked on
    the batch, as for CAM), zeroing :math:`f_k` lowers :math:`S_c` by exactly
    :math:`w^c_k F_k`, so every ablation is computed in closed form, with no extra pass
    (:func:`closed_form_drops`). Elsewhere the network runs from the layer onward on the
    ablated copies, ``batch_size`` per image at a time (by default about 16 MiB of them
    per pass). A channel that is already all zero changes nothing when zeroed: its
    weight is 0 without a pass. Where :math:`S_c = 0` the weights are 0.

    On a channels-last or token layer (see :mod:`camlib.layouts`) the ablated maps are
    put back into the layer's own layout before the rest of the network runs: for
    tokens, channel :math:`k` is zeroed in every patch token. The class token (and any
    register token) is kept unchanged: it is no position of the map, so it is not
    ablated and not part of the map.

    Args:
        inputs: the layer's activations ``[B, K, h, w]``, the logits and the network's
            tail and the classes ``[B, T]``.

    Returns:
        Raw maps ``[B, T, h, w]``, one per class asked of each image.
    """
    assert inputs.tail is not None and inputs.logits is not None
    f, classes = inputs.activations, inputs.classes
    score = inputs.logits.gather(1, classes)[:, None, :]  # [B, 1, T]
    if inputs.head is not None:
        drop = closed_form_drops(inputs)
    else:
        drop = score - ablated_scores(inputs, score)
    safe = torch.where(score != 0, score, torch.ones_like(score))
    weights = torch.where(score != 0, drop / safe, 0.0)
    return torch.einsum("bkhw,bkt->bthw", f, weights.to(f.dtype))


def closed_form_drops(inputs: MethodInputs) -> Tensor:
    """``S_c - S_c^{(k)}`` [B, K, T] for a layer that feeds GAP + linear: ``w_k^c
    mean(f_k)``.

    Zeroing channel ``k`` removes exactly its term of the logit, so no pass is needed.
    """
    assert inputs.head is not None
    pooled = inputs.head.pooled_features(inputs.activations).mean(
        dim=(-2, -1)
    )  # [B, K]
    weight = inputs.head.weight[inputs.classes].transpose(1, 2)  # [B, K, T]: w_k^c
    return pooled[..., None] * weight


def ablated_scores(inputs: MethodInputs, score: Tensor) -> Tensor:
    """``S_c^{(k)}`` [B, K, T] by running the network's tail on the ablated copies; an
    all-zero channel keeps ``score`` [B, 1, T] without a pass."""
    assert inputs.tail is not None
    f, classes = inputs.activations, inputs.classes
    batch, channels = f.shape[:2]
    result = score.expand(batch, channels, -1).clone()  # [B, K, T]: dead channels
    pairs = (
        f.flatten(2).ne(0).any(2).nonzero()
    )  # [N, 2]: (image, channel) pairs to ablate
    if inputs.batch_size:
        rows = inputs.batch_size * batch
    else:
        rows = max(1, ABLATION_BYTES // (f[0].numel() * f.element_size()))
    chunks = range(0, pairs.shape[0], rows)
    with inputs.tail:  # one hook, eval mode and no_grad for all the passes
        for start in tqdm(chunks, desc="Ablation-CAM", disable=not inputs.progress):
            b, k = pairs[start : start + rows].unbind(1)
            variants = f.index_select(
                0, b
            )  # [n, K, h, w], a copy (4x faster than f[b])
            variants[torch.arange(b.numel(), device=f.device), k] = 0
            logits = inputs.tail(variants, b)  # [n, num_classes]
            result[b, k] = logits.gather(1, classes[b]).to(result.dtype)
    return result
