"""Methods that run the network again on changed inputs or changed layer outputs.

Score-CAM masks the input with each channel and reruns the whole network; Ablation-CAM zeroes
each channel and reruns the network from the layer onward only (see
:class:`camlib.capture.LayerSwap`). Both apply per layer: asking for several layers multiplies
their cost by the number of layers.

Score-CAM's masked images go through the network in whichever memory layout runs faster on
this model, machine and size: the first chunks try both (:class:`LayoutTrial`).
"""
from __future__ import annotations

import time

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .methods import MethodInputs, register
from .postprocess import normalize, upsample

# Score-CAM's masked images per forward pass unless batch_size says otherwise: SCORE_BATCH on
# accelerators, SCORE_BATCH_CPU on the CPU. On 2 CPU cores (ResNet-18, 224 x 224, channels-last)
# batches of 4, 8 and 16 ran within 1% of each other and 32 took 1.16 x as long
# (benchmarks/scorecam_batch.py, README); smaller batches also hold less memory
SCORE_BATCH = 32
SCORE_BATCH_CPU = 8
ABLATION_BYTES = 16 * 2**20  # ablated layer outputs per pass unless batch_size says otherwise
# Ablation-CAM at a layer that feeds GAP + linear: the ablations in closed form (exact); False
# runs the tail on the ablated copies there too (tests and benchmarks compare the two)
GAP_SHORTCUT = True
# Score-CAM: time the first full chunks in the usual and the channels-last layout and keep the
# faster (False: always the usual layout)
LAYOUT_TRIAL = True


@register("scorecam", needs_forward=True)
def scorecam(inputs: MethodInputs) -> Tensor:
    """Score-CAM, Wang et al. (2020): a channel's weight is how much the class likes what it shows.

    ``H_k = minmax(upsample(f_k))`` masks the image ``X``; ``w^c = softmax_k(S_c(X * H_k))``
    (softmax over the K channels) and ``M_c = sum_k w_k^c f_k``. That is K forward passes per
    image, run ``batch_size`` masked images at a time (by default
    :func:`default_score_batch`), so the B x K masked images never exist at once. A constant
    channel gives an all-zero mask, hence the same all-zero image for every such channel of
    every image: it is scored once. The masked images go through the network in
    the faster memory layout for this model and size (:class:`LayoutTrial`).
    """
    assert inputs.images is not None and inputs.forward is not None and inputs.logits is not None
    f, images, classes = inputs.activations, inputs.images, inputs.classes
    flat = f.flatten(2)
    constant = flat.amax(2) == flat.amin(2)  # [B, K]
    scores = inputs.logits.new_zeros(*f.shape[:2], classes.shape[1])  # [B, K, T]
    if bool(constant.any()):
        zero_logits = inputs.forward(torch.zeros_like(images[:1]))[0]  # [num_classes]
        scores = torch.where(constant[..., None], zero_logits[classes][:, None, :], scores)
    pairs = (~constant).nonzero()  # [N, 2]: (image, channel) pairs that need a forward pass
    batch = inputs.batch_size or default_score_batch(images.device)
    chunks = range(0, pairs.shape[0], batch)
    trial = LayoutTrial(pairs.shape[0] // batch, images, inputs.memory, batch)
    for i, start in enumerate(tqdm(chunks, desc="Score-CAM", disable=not inputs.progress)):
        b, k = pairs[start : start + batch].unbind(1)
        masks = normalize(upsample(f[b, k], tuple(images.shape[-2:])), inplace=True)
        # X * H_k [n, C, H, W], written straight into the layout that this chunk runs in
        masked = torch.empty((b.numel(), *images.shape[1:]), dtype=images.dtype,
                             device=images.device, memory_format=trial.layout(i))
        torch.mul(images.index_select(0, b), masks[:, None].to(images.dtype), out=masked)
        logits = trial.run(i, inputs.forward, masked)
        del masked, masks  # freed before the next chunk's are made
        scores[b, k] = logits.gather(1, classes[b]).to(scores.dtype)
    weights = scores.softmax(dim=1)  # over channels
    return torch.einsum("bkhw,bkt->bthw", f, weights.to(f.dtype))


def default_score_batch(device: torch.device | str) -> int:
    """Score-CAM's masked images per forward pass when ``batch_size`` is not given."""
    return SCORE_BATCH_CPU if torch.device(device).type == "cpu" else SCORE_BATCH


class LayoutTrial:
    """Runs chunks of masked images in the faster of two memory layouts, found on the chunks.

    Convolutions on the CPU may run much faster on channels-last images (ResNet-18 at 224 x 224
    on 2 cores, as below) or slower (the same network at 64 x 64); it depends
    on the model, the size and the machine. With at least 2 x :data:`TRIALS` full chunks to
    run, the first :data:`TRIALS` chunks alternate usual, channels-last, usual, ..., each
    timed; the layout with the faster best time runs the rest (the usual one unless
    channels-last is at least 3% faster). Three timings per layout, because one timing on a
    shared machine can be off by a fifth; but after any pair of chunks, once one layout's best
    time is under :data:`CLEAR` (0.8) times the other's, the faster runs the rest, which spares
    most of the slower layout's extra time where the gap is wide (ResNet-18 at 224 x 224 on 2
    cores: channels-last 0.63 to 0.78 times the usual layout's time in four benchmark runs).
    The risk: a pair timed while the machine's speed jumps by more than a fifth between two
    adjacent chunks can pick the slower layout, and that choice is remembered. Both layouts
    hold the same numbers, so the results agree up to floating-point rounding. A model that
    fails on channels-last input (e.g. a ``view`` that needs contiguous memory) gets its chunk
    again in the usual layout, and the usual layout from then on.

    The choice is remembered in ``memory`` (the Explainer keeps one dict per model), for images
    of the same size, type and device at the same batch size: later calls on the same model
    skip the trial, whatever their number of chunks.
    """

    TRIALS = 6  # trial chunks; the trial runs only with at least 2 x TRIALS full chunks
    CLEAR = 0.8  # a layout under CLEAR x the other's time after a pair of chunks wins at once

    def __init__(self, full_chunks: int, images: Tensor, memory: dict | None = None,
                 batch: int = 0) -> None:
        self.device = images.device
        self.memory = memory if LAYOUT_TRIAL else None
        self.key = ("scorecam layout", tuple(images.shape[1:]), images.dtype, str(self.device),
                    batch)
        self.reused = self.memory is not None and self.key in self.memory
        tryable = images.dim() == 4 and self.device.type in ("cpu", "cuda")
        on = LAYOUT_TRIAL and tryable and full_chunks >= 2 * self.TRIALS
        self.chosen: torch.memory_format | None = None if on else torch.contiguous_format
        if self.reused:
            self.chosen = self.memory[self.key]
        self.best: dict[torch.memory_format, float] = {}
        self.timed = 0  # trial chunks run so far

    def layout(self, i: int) -> torch.memory_format:
        """The memory layout that chunk ``i`` runs in: the chosen one, or the trial's."""
        if self.chosen is not None:
            return self.chosen
        return torch.channels_last if i % 2 else torch.contiguous_format

    def run(self, i: int, forward, images: Tensor) -> Tensor:
        """``forward(images)`` for chunk ``i``, in :meth:`layout` (a copy unless already so)."""
        layout = self.layout(i)
        if self.chosen is not None:
            return forward(images.contiguous(memory_format=layout))
        self._sync()
        start = time.perf_counter()
        try:
            logits = forward(images.contiguous(memory_format=layout))
        except RuntimeError:
            if layout is torch.contiguous_format:
                raise
            self._choose(torch.contiguous_format)
            return forward(images.contiguous())
        self._sync()
        seconds = time.perf_counter() - start
        self.timed += 1
        self.best[layout] = min(seconds, self.best.get(layout, seconds))
        if i % 2:  # both layouts timed as often
            usual, last = self.best[torch.contiguous_format], self.best[torch.channels_last]
            if i + 1 == self.TRIALS or min(usual, last) < self.CLEAR * max(usual, last):
                fast = last < 0.97 * usual
                self._choose(torch.channels_last if fast else torch.contiguous_format)
        return logits

    def _choose(self, layout: torch.memory_format) -> None:
        self.chosen = layout
        if self.memory is not None:
            self.memory[self.key] = layout

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


@register("ablationcam", needs_tail=True, wants_head=True)
def ablationcam(inputs: MethodInputs) -> Tensor:
    """Ablation-CAM, Desai & Ramaswamy (2020): ``w_k^c = (S_c - S_c^{(k)}) / S_c``.

    ``M_c = sum_k w_k^c f_k``; ``S_c^{(k)}`` is the class score with channel ``k`` of the layer
    set to zero. Where the layer feeds global average pooling and one linear layer (checked on
    the batch, as for CAM), zeroing ``f_k`` lowers ``S_c`` by exactly ``w_k^c mean(f_k)``, so
    every ablation is computed in closed form, with no extra pass (:data:`GAP_SHORTCUT`).
    Elsewhere the network runs from the layer onward on the ablated copies, ``batch_size`` per
    image at a time (by default about 16 MiB of them per pass, which stays in cache). A
    channel that is already all zero changes nothing when zeroed: its weight is 0 without a
    pass. Where ``S_c = 0`` the weights are 0.
    """
    assert inputs.tail is not None and inputs.logits is not None
    f, classes = inputs.activations, inputs.classes
    score = inputs.logits.gather(1, classes)[:, None, :]  # [B, 1, T]
    if GAP_SHORTCUT and inputs.head is not None:
        pooled = inputs.head.pooled_features(f).mean(dim=(-2, -1))  # [B, K]
        weight = inputs.head.weight[classes].transpose(1, 2)  # [B, K, T]: w_k^c
        drop = pooled[..., None] * weight  # [B, K, T]: S_c - S_c^(k), exactly
    else:
        drop = score - _ablated_scores(inputs, score)
    safe = torch.where(score != 0, score, torch.ones_like(score))
    weights = torch.where(score != 0, drop / safe, 0.0)
    return torch.einsum("bkhw,bkt->bthw", f, weights.to(f.dtype))


def _ablated_scores(inputs: MethodInputs, score: Tensor) -> Tensor:
    """``S_c^{(k)}`` [B, K, T] by running the network's tail on the ablated copies; an all-zero
    channel keeps ``score`` [B, 1, T] without a pass."""
    assert inputs.tail is not None
    f, classes = inputs.activations, inputs.classes
    batch, channels = f.shape[:2]
    ablated_scores = score.expand(batch, channels, -1).clone()  # [B, K, T]: dead channels
    pairs = f.flatten(2).ne(0).any(2).nonzero()  # [N, 2]: (image, channel) pairs to ablate
    if inputs.batch_size:
        rows = inputs.batch_size * batch
    else:
        rows = max(1, ABLATION_BYTES // (f[0].numel() * f.element_size()))
    chunks = range(0, pairs.shape[0], rows)
    with inputs.tail:  # one hook, eval mode and no_grad for all the passes
        for start in tqdm(chunks, desc="Ablation-CAM", disable=not inputs.progress):
            b, k = pairs[start : start + rows].unbind(1)
            variants = f.index_select(0, b)  # [n, K, h, w], a copy (4x faster than f[b])
            variants[torch.arange(b.numel(), device=f.device), k] = 0
            logits = inputs.tail(variants, b)  # [n, num_classes]
            ablated_scores[b, k] = logits.gather(1, classes[b]).to(ablated_scores.dtype)
    return ablated_scores
