"""What each member of the CAM family adds, and what it costs: Chapter 5's demonstrations.

- :func:`network_rows`, :func:`forward_seconds`, :func:`cost_markdown`: network evaluations per
  image (counted with hooks) and time against a plain forward pass;
- :func:`instance_table`: two objects of one class side by side, how the map shares itself;
- :func:`layer_table`: the map's mass on the object at several depths;
- :class:`FlattenHead`, :func:`head_table`: a head that is not GAP + linear, where Grad-CAM and
  HiResCAM part ways.

The scene networks and metrics come from :mod:`cambook.compare`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from camlib import metrics, sanity
from . import data
from .compare import FAMILY, GENERA, NAMES, SceneTask, family_maps, mass_on
from camlib.explain import Explanation, explain


# --- cost -------------------------------------------------------------------------------------


def network_rows(
    model: nn.Module, classifier: nn.Module, images: Tensor, method: str, layer: str | None,
    batch_size: int | None = None, classes: Tensor | None = None, warm_up: bool = True,
) -> tuple[dict[str, float], Explanation]:
    """``(cost, explanation)`` of one :func:`camlib.explain` call. Cost per image: rows the whole
    network ran on (``full``), rows the classifier ran on (``evaluations``: whole network or
    from the layer onward), and the call's ``seconds``. With ``warm_up``, one uncounted,
    untimed call on the first image comes first, so the time leaves out one-off set-up."""
    if warm_up:
        explain(model, images[:1], method, layer, None if classes is None else classes[:1],
                batch_size=batch_size)
    counts = {"full": 0, "evaluations": 0}

    def count(key: str):
        def hook(_module, inputs, _output=None):
            counts[key] += inputs[0].shape[0]
        return hook

    handles = [model.register_forward_pre_hook(count("full")),
               classifier.register_forward_hook(count("evaluations"))]
    try:
        clock = time.perf_counter()
        exp = explain(model, images, method, layer, classes, batch_size=batch_size)
        seconds = time.perf_counter() - clock
    finally:
        for handle in handles:
            handle.remove()
    batch = images.shape[0]
    cost = {"full": counts["full"] / batch, "evaluations": counts["evaluations"] / batch,
            "seconds": seconds}
    return cost, exp


def forward_seconds(model: nn.Module, images: Tensor, repeats: int = 3) -> float:
    """Best of ``repeats`` plain forward passes, in seconds."""
    best = math.inf
    with torch.no_grad():
        for _ in range(repeats):
            clock = time.perf_counter()
            model(images)
            best = min(best, time.perf_counter() - clock)
    return best


# --- heads that are not GAP + linear ----------------------------------------------------------


class FlattenHead(nn.Module):
    """A trained network's convolutions, then flatten and one linear layer over all K x h x w
    positions: a head where the gradient of a class score differs from place to place."""

    def __init__(self, features: nn.Module, shape: tuple[int, int, int], classes: int) -> None:
        super().__init__()
        self.features = features
        self.fc = nn.Linear(math.prod(shape), classes)

    def forward(self, images: Tensor) -> Tensor:
        return self.fc(self.features(images).flatten(1))


def flatten_head(task: SceneTask, steps: int = 60, seed: int = 0, views: int = 1000) -> FlattenHead:
    """:class:`FlattenHead` on ``task.model``'s frozen features: only the linear layer is
    trained (full-batch AdamW on the first ``views`` training views)."""
    with torch.no_grad():
        features = task.model.features(task.train_views[:views])
    model = FlattenHead(task.model.features, tuple(features.shape[1:]), len(GENERA))
    torch.manual_seed(seed)
    model.fc.reset_parameters()
    optimiser = torch.optim.AdamW(model.fc.parameters(), lr=3e-3, weight_decay=1e-2)
    flat = features.flatten(1)
    for _ in range(steps):
        loss = nn.functional.cross_entropy(model.fc(flat), task.train_labels[:views])
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    return model.eval()


# --- several instances ------------------------------------------------------------------------


def instance_pairs(
    scenes: data.Scenes, labels: Tensor, count: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Up to ``count`` pairs of scenes of the same class, side by side: global views
    [N, 3, 32, 64], their class [N], and each object's mask at full resolution [N, 2, 128, 256]
    (left object, right object)."""
    views = data.downsample(scenes.float_images(), 4)
    left, right = [], []
    for genus in labels.unique().tolist():
        members = (labels == genus).nonzero().flatten().tolist()
        for a, b in zip(members[0::2], members[1::2]):
            left.append(a)
            right.append(b)
    left, right = torch.tensor(left[:count]), torch.tensor(right[:count])
    pairs = torch.cat([views[left], views[right]], dim=-1)
    blank = torch.zeros_like(scenes.masks[left])
    masks = torch.stack([torch.cat([scenes.masks[left], blank], -1),
                         torch.cat([blank, scenes.masks[right]], -1)], dim=1)
    return pairs, labels[left], masks


def instance_table(task: SceneTask, count: int = 32, methods: Sequence[str] = FAMILY
                   ) -> dict[str, dict[str, float]]:
    """Pairs of test scenes of one genus side by side (:func:`instance_pairs`): per method, the
    mean share of the on-object mass that the *weaker* object gets (0.5: both alike) and the
    mean share of the map's mass on the two objects together."""
    pairs, classes, masks = instance_pairs(task.test, task.labels("test"), count)
    maps = family_maps(task.model, pairs, classes, methods, batch_size=512)
    table = {}
    for method, m in maps.items():
        left, right = mass_on(m, masks[:, 0]), mass_on(m, masks[:, 1])
        both = left + right
        weaker = torch.minimum(left, right) / both.clamp_min(1e-12)
        table[method] = {"weaker": weaker.mean().item(), "both": both.mean().item()}
    return table


def layer_table(task: SceneTask, layers: Sequence[str], methods: Sequence[str]
                ) -> dict[str, dict[str, float]]:
    """``{method: {layer: mean share of the map's mass on the object}}`` on the test scenes."""
    views, labels = task.views("test"), task.labels("test")
    return {
        method: {
            layer: mass_on(family_maps(task.model, views, labels, [method], layer)[method],
                           task.test.masks).mean().item()
            for layer in layers
        }
        for method in methods
    }


def head_table(task: SceneTask, methods: Sequence[str] = ("gradcam", "hirescam"),
               steps: int = 16) -> dict[str, dict[str, float]]:
    """The same features under a flatten + linear head (:func:`flatten_head`): per method, the
    deletion and insertion AUC, the mass on the object, and how far the raw map's sum is from
    ``S_c - b_c`` (relative to ``|S_c - b_c|``); ``"both"`` holds the head's accuracy and the
    Spearman correlation between the first two methods' maps."""
    head = flatten_head(task)
    views, labels = task.views("test"), task.labels("test")
    table, maps = {}, {}
    for method in methods:
        exp = explain(head, views, method, "features", labels)
        maps[method] = exp.maps[:, 0]
        score = exp.logits.gather(1, labels[:, None])[:, 0] - head.fc.bias.detach()[labels]
        total = exp.raw["features"][:, 0].sum(dim=(-2, -1))
        table[method] = {
            **{mode: metrics.perturbation_curve(head, views, maps[method], labels, mode,
                                                steps=steps, baseline="mean").auc.mean().item()
               for mode in ("deletion", "insertion")},
            "mass_on_object": mass_on(maps[method], task.test.masks).mean().item(),
            "sum_error": ((total - score).abs() / score.abs().clamp_min(1e-6)).median().item(),
        }
    with torch.no_grad():
        accuracy = (head(views).argmax(1) == labels).float().mean().item()
    rho = sanity.spearman(*(maps[m] for m in methods[:2]))
    table["both"] = {"accuracy": accuracy, "spearman": rho[torch.isfinite(rho)].mean().item()}
    return table


def cost_markdown(groups: dict[str, tuple[dict[str, dict[str, float]], float]],
                  estimates: dict[str, dict[str, str]] | None = None) -> str:
    """The cost table: for each group (``{title: (costs by method from :func:`network_rows`,
    seconds of a plain forward of the same batch)}``), the evaluations of the network per image
    (whole network + from the layer onward) and the time as a multiple of a plain forward.
    ``estimates`` ({group: {method: (evaluations, time)}}) fills the cells of methods not run."""
    header = "| method |" + "".join(f" {t}: evaluations per image | {t}: time / forward |"
                                     for t in groups)
    lines = [header, "|---|" + "---:|---:|" * len(groups)]
    for method in FAMILY:
        cells = []
        for title, (costs, plain) in groups.items():
            if method in costs:
                cost = costs[method]
                cells += [f"{cost['evaluations']:.0f} ({cost['full']:.0f} whole)",
                          f"{cost['seconds'] / plain:.1f}x"]
            else:
                cells += list((estimates or {}).get(title, {}).get(method, ("-", "-")))
        lines.append(f"| {NAMES[method]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
