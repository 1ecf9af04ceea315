"""The settings of Chapter 4's experiment (:mod:`cambook.enhance`,
:mod:`cambook.wsdan`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor, nn

# One training step's outputs: (model, index, batch, target) -> a list of logits, one
# per view
Forward = Callable[[nn.Module, Tensor, Tensor, Tensor], list[Tensor]]


@dataclass(frozen=True)
class Config:
    """Everything that defines one run; the defaults fit the chapter's time budget on 2
    cores."""

    seed: int = 0
    n_train: int = 3000
    # for choosing the localisation threshold, as Choe et al. advise
    n_validation: int = 300
    n_test: int = 600
    image_size: int = 128
    factor: int = 4  # the global view is image_size / factor pixels wide
    input_size: int = 32  # what every classifier sees
    widths: tuple[int, ...] = (16, 24, 32, 32)
    epochs: int = 4  # stage 1 and the single networks
    stage2_epochs: int = 2  # each of the five stage-2 networks
    batch_size: int = 32  # stage 1 and the single networks: small batches, many steps
    stage2_batch_size: int = 64
    learning_rate: float = 1e-2
    # Stage 1 has learned when its validation accuracy is at least learned_factor times
    # chance (1 / classes); if not, it starts again from a fresh initialisation and data
    # order, at most stage1_restarts times
    learned_factor: float = 2.0
    stage1_restarts: int = 2
    ratio: float = 0.2  # Zhou et al.'s threshold
    # maps are thresholded at this resolution (a quarter of the image's)
    map_size: int = 32
    training_map_size: int = 32  # the same, for the crops made at every training step
    margin: float = 1.25
    min_side: float = 24.0
    # the single network crops around map > this (WS-DAN uses 0.4-0.6)
    attention_ratio: float = 0.5
    # CAM-guided dropping erases the global view where the map exceeds this
    drop_ratio: float = 0.5
    # WS-DAN variants to run, "crops" and/or "crops + drops": none by default, as they
    # need about twice stage 1's budget each to learn at all
    single_networks: tuple[str, ...] = ()
    thresholds: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(1, 10))
    device: str | None = None  # None: CUDA when present, else the CPU
