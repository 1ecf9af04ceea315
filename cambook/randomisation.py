"""Data randomisation (Adebayo et al. 2018) on the book's synthetic scenes.

A small network trained on the scenes' true labels against the same network trained on
shuffled labels: if their maps agree, the maps do not depend on what the model learned.
Uses :mod:`camlib.sanity`'s comparisons; the training is the book's
(:mod:`cambook.enhance`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from camlib.explain import explain
from camlib.sanity import Comparison, SanityResult, spearman, ssim

from . import data, enhance


def _maps(model: nn.Module, images: Tensor, method: str, classes: Tensor) -> Tensor:
    return explain(model, images, method=method, classes=classes).maps[:, 0]


def train_scene_model(
    images: Tensor,
    labels: Tensor,
    seed: int,
    epochs: int,
    widths: tuple[int, ...] = (16, 24, 32, 32),
    batch_size: int = 64,
    classes: int | None = None,
    learning_rate: float = 1e-2,
) -> nn.Module:
    """A small CAM-ready CNN (:class:`cambook.networks.SmallCNN`, ``classes`` outputs,
    default the 8 scene classes) trained on ``images``: AdamW, one-cycle schedule up to
    ``learning_rate`` (the only place that depends on :mod:`cambook.enhance`'s training
    loop)."""
    torch.manual_seed(seed)
    config = enhance.Config(
        seed=seed,
        epochs=epochs,
        batch_size=batch_size,
        widths=widths,
        learning_rate=learning_rate,
    )
    model = enhance.SmallCNN(classes or len(data.SCENE_CLASSES), widths)
    return enhance.train_classifier(model, images, labels, config)


def shuffle_labels(labels: Tensor, seed: int) -> Tensor:
    """``labels`` in a random order drawn from ``seed``: a permutation, so every class
    keeps its count, but no label is tied to its image any more."""
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    return labels[order.to(labels.device)]


def data_randomisation(
    n_train: int = 1500,
    n_test: int = 64,
    epochs: int = 4,
    method: str = "cam",
    seed: int = 0,
    widths: tuple[int, ...] = (16, 24, 32, 32),
) -> SanityResult:
    """Train one network on the synthetic scenes' true labels and one on shuffled labels
    (same images, same budget), and compare their maps of the true class on ``n_test``
    new scenes. Both see the 32-pixel global view. ``extra`` holds each model's test
    accuracy and its accuracy on the labels it was trained on, and ``models``. The
    defaults reach about a third test accuracy (chance: 1/8) with true labels; bigger
    budgets learn more."""
    scenes = data.make_scenes(n_train + n_test, seed=20_000 + seed, size=128)
    views = data.downsample(scenes.float_images(), 4)
    train, test = slice(0, n_train), slice(n_train, None)
    labels = scenes.labels[train]
    shuffled = shuffle_labels(labels, seed)
    models = {
        "true labels": train_scene_model(views[train], labels, seed, epochs, widths),
        "shuffled labels": train_scene_model(
            views[train], shuffled, seed, epochs, widths
        ),
    }
    extra = {}
    for (name, model), fitted in zip(models.items(), (labels, shuffled), strict=True):
        with torch.no_grad():
            extra[name] = {
                "test accuracy": (model(views[test]).argmax(1) == scenes.labels[test])
                .float()
                .mean()
                .item(),
                "training accuracy": (model(views[train]).argmax(1) == fitted)
                .float()
                .mean()
                .item(),
            }
    true_class = scenes.labels[test]
    original = _maps(models["true labels"], views[test], method, true_class)
    maps = _maps(models["shuffled labels"], views[test], method, true_class)
    comparison = Comparison(
        "shuffled labels", spearman(original, maps), ssim(original, maps)
    )
    return SanityResult(
        "data", original, true_class, [comparison], extra | {"models": models}
    )
