"""The CAM family side by side: every method, every metric, every sanity check, over seeds.

- :func:`scene_task`: synthetic scenes (:func:`camlib.data.make_scenes`) and a small CAM-ready
  network trained to name the ring's colour (the genus, 4 classes) from the 32-pixel global view;
- :func:`family_maps`: one map per image for each method, at the input's resolution;
- :func:`metric_table`: deletion and insertion AUC, average drop and increase, the pointing game,
  the share of the map's mass on the object and GT-known localisation at a validated threshold;
- :func:`sanity_table`: cascading and independent model randomisation, and data randomisation
  (the same network trained on shuffled labels), as Spearman and SSIM against the trained maps;
- :func:`summarise` and :func:`markdown_table`: mean and standard deviation over seeds;
- :func:`network_rows`: how many images each method pushes through the network, counted.

Maps are those of :func:`camlib.explain` (ReLU, upsampled, scaled to [0, 1]) for the true class.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from . import data, enhance, metrics, sanity
from .explain import Explanation, explain

FAMILY = (
    "cam", "gradcam", "gradcampp", "xgradcam", "layercam", "hirescam", "eigencam", "scorecam",
    "ablationcam",
)
NAMES = {
    "cam": "CAM", "gradcam": "Grad-CAM", "gradcampp": "Grad-CAM++", "xgradcam": "XGrad-CAM",
    "layercam": "LayerCAM", "hirescam": "HiResCAM", "eigencam": "Eigen-CAM",
    "scorecam": "Score-CAM", "ablationcam": "Ablation-CAM",
}
GENERA = ("red", "green", "blue", "yellow")  # the ring colours: class = genus of the scene
LAYER = "features"  # the last feature map of SmallCNN, the one that feeds the pooling


# --- the task ---------------------------------------------------------------------------------


@dataclass
class SceneTask:
    """One seed: a trained network and its validation and test scenes (global views, labels,
    full-resolution boxes and masks)."""

    seed: int
    model: nn.Module
    train_views: Tensor
    train_labels: Tensor
    validation: data.Scenes
    test: data.Scenes
    accuracy: float  # on the test scenes
    seconds: float  # data and training

    def views(self, part: str) -> Tensor:
        return data.downsample(getattr(self, part).float_images(), 4)

    def labels(self, part: str) -> Tensor:
        return getattr(self, part).labels // len(data.SPECIES)


def train(views: Tensor, labels: Tensor, seed: int, epochs: int) -> nn.Module:
    """SmallCNN (:mod:`camlib.enhance`) on ``views`` for the 4 genera."""
    torch.manual_seed(seed)
    config = enhance.Config(seed=seed, epochs=epochs, batch_size=64)
    return enhance.train_classifier(enhance.SmallCNN(len(GENERA)), views, labels, config)


def scene_task(
    seed: int, n_train: int = 2000, n_validation: int = 100, n_test: int = 64, epochs: int = 5
) -> SceneTask:
    """Scenes (seed ``30_000 + seed``) and a network trained from scratch on the genus."""
    clock = time.perf_counter()
    scenes = data.make_scenes(n_train + n_validation + n_test, seed=30_000 + seed)
    views = data.downsample(scenes[:n_train].float_images(), 4)
    labels = scenes[:n_train].labels // len(data.SPECIES)
    model = train(views, labels, seed, epochs)
    test = scenes[n_train + n_validation :]
    task = SceneTask(seed, model, views, labels, scenes[n_train : n_train + n_validation], test,
                     math.nan, 0.0)
    with torch.no_grad():
        predicted = model(task.views("test")).argmax(1)
    task.accuracy = (predicted == task.labels("test")).float().mean().item()
    task.seconds = time.perf_counter() - clock
    return task


# --- maps and what they cover -----------------------------------------------------------------


def family_maps(
    model: nn.Module, images: Tensor, classes: Tensor, methods: Sequence[str] = FAMILY,
    layer: str | None = LAYER, batch_size: int | None = None,
) -> dict[str, Tensor]:
    """``{method: maps [B, H, W]}`` of ``classes`` [B], each map ReLU'd, upsampled, in [0, 1]."""
    return {
        method: explain(model, images, method=method, layers=layer, classes=classes,
                        batch_size=batch_size).maps[:, 0]
        for method in methods
    }


def mass_on(maps: Tensor, masks: Tensor) -> Tensor:
    """Share of each map's mass on its mask [B] (maps [B, h, w] are upsampled to the masks'
    size); 0 for an all-zero map. Wang et al.'s energy-based pointing game."""
    maps = metrics.image_maps(maps, masks.float())
    total = maps.flatten(1).sum(1)
    inside = (maps * masks).flatten(1).sum(1)
    return torch.where(total > 0, inside / total.clamp_min(1e-12), torch.zeros_like(total))


# --- every metric -----------------------------------------------------------------------------

# metric -> (column title, True where higher is better)
METRICS = {
    "deletion": ("deletion AUC", False),
    "insertion": ("insertion AUC", True),
    "average_drop": ("average drop %", False),
    "increase": ("increase %", True),
    "pointing": ("pointing game", True),
    "mass_on_object": ("mass on object", True),
    "gt_known": ("GT-known loc.", True),
}


def metric_table(
    task: SceneTask, methods: Sequence[str] = FAMILY, steps: int = 16, baseline: str = "mean",
    tolerance: float = 8.0,
) -> dict[str, dict[str, float]]:
    """``{method: {metric: value}}`` on the test scenes, maps of the true genus.

    Deletion and insertion replace pixels of the 32-pixel view by ``baseline`` in ``steps``
    steps; the pointing game's ``tolerance`` is in pixels of the 128-pixel scene; GT-known
    localisation uses the threshold (ratio of the maximum) that is best on the validation scenes.
    """
    views, labels, test = task.views("test"), task.labels("test"), task.test
    validation_maps = family_maps(task.model, task.views("validation"), task.labels("validation"),
                                  methods, batch_size=512)
    maps = family_maps(task.model, views, labels, methods, batch_size=512)
    everyone = torch.ones(len(task.validation), dtype=torch.bool)
    with torch.no_grad():
        correct = task.model(views).argmax(1) == labels
    table = {}
    for method in methods:
        m = maps[method]
        curves = {
            mode: metrics.perturbation_curve(task.model, views, m, labels, mode, steps=steps,
                                             baseline=baseline, max_batch=512).auc.mean().item()
            for mode in ("deletion", "insertion")
        }
        change = metrics.confidence_change(task.model, views, m, labels)
        sweep = metrics.threshold_sweep(validation_maps[method], task.validation.boxes,
                                        task.validation.masks, everyone)
        ratio = max(sweep, key=lambda row: row["gt_known"])["ratio"]
        table[method] = {
            **curves,
            "average_drop": change.average_drop,
            "increase": change.increase_rate,
            "pointing": metrics.pointing_game(m, test.masks, tolerance).float().mean().item(),
            "mass_on_object": mass_on(m, test.masks).mean().item(),
            "gt_known": metrics.localisation(m, test.boxes, test.masks, correct, ratio)["gt_known"],
            "ratio": ratio,
        }
    return table


# --- sanity checks ----------------------------------------------------------------------------

SANITY = {
    "top_spearman": "classifier re-initialised: Spearman",
    "cascade_spearman": "all layers re-initialised: Spearman",
    "cascade_ssim": "all layers: SSIM",
    "independent_spearman": "one layer at a time: mean Spearman",
    "data_spearman": "shuffled labels: Spearman",
    "data_ssim": "shuffled labels: SSIM",
}


@dataclass(frozen=True)
class Sanity:
    table: dict[str, dict[str, float]]  # {method: {check: value}}, the checks of SANITY
    steps: dict[str, list[tuple[str, float]]]  # {method: [(layer, Spearman)]}, cascading
    shuffled: dict[str, float]  # the shuffled-label network's accuracies


def sanity_table(
    task: SceneTask, methods: Sequence[str] = FAMILY, images: int = 32, epochs: int = 5
) -> Sanity:
    """Every check of :data:`SANITY` for every method on ``images`` test scenes, maps of the
    true genus. Data randomisation trains the same network, same budget, on the training
    views with shuffled labels."""
    views, labels = task.views("test")[:images], task.labels("test")[:images]
    generator = torch.Generator().manual_seed(task.seed)
    shuffled = task.train_labels[torch.randperm(len(task.train_labels), generator=generator)]
    random_model = train(task.train_views, shuffled, task.seed, epochs)
    with torch.no_grad():
        fitted = {
            "training accuracy (shuffled labels)":
                (random_model(task.train_views).argmax(1) == shuffled).float().mean().item(),
            "test accuracy": (random_model(task.views("test")).argmax(1) == task.labels("test"))
            .float().mean().item(),
        }
    table, steps = {}, {}
    for method in methods:
        cascade = sanity.cascading_randomisation(task.model, views, method, LAYER, labels,
                                                 seed=task.seed).table()
        independent = sanity.independent_randomisation(task.model, views, method, LAYER, labels,
                                                       seed=task.seed).table()
        trained = family_maps(task.model, views, labels, [method])[method]
        other = family_maps(random_model, views, labels, [method])[method]
        rho = sanity.spearman(trained, other)
        table[method] = {
            "top_spearman": cascade[0]["spearman"],
            "cascade_spearman": cascade[-1]["spearman"],
            "cascade_ssim": cascade[-1]["ssim"],
            "independent_spearman": sum(row["spearman"] for row in independent) / len(independent),
            "data_spearman": rho[torch.isfinite(rho)].mean().item(),
            "data_ssim": sanity.ssim(trained, other).mean().item(),
        }
        steps[method] = [(row["step"], row["spearman"]) for row in cascade]
    return Sanity(table, steps, fitted)


# --- over seeds -------------------------------------------------------------------------------


def summarise(tables: Sequence[dict[str, dict[str, float]]]) -> dict[str, dict[str, tuple]]:
    """``{method: {metric: (mean, std)}}`` over the seeds' tables (std with n - 1; NaN left out)."""
    summary: dict[str, dict[str, tuple]] = {}
    for method in tables[0]:
        for metric in tables[0][method]:
            values = torch.tensor([t[method][metric] for t in tables], dtype=torch.float64)
            values = values[torch.isfinite(values)]
            std = values.std().item() if values.numel() > 1 else math.nan
            mean = values.mean().item() if values.numel() else math.nan
            summary.setdefault(method, {})[metric] = (mean, std)
    return summary


def markdown_table(summary: dict[str, dict[str, tuple]], columns: dict[str, str], digits: int = 2,
                   best: dict[str, bool] | None = None) -> str:
    """A Markdown table, one row per method, cells ``mean ± std``; with ``best`` ({metric: higher
    is better}), the best mean of each column is in bold."""
    header = "| method | " + " | ".join(columns.values()) + " |"
    lines = [header, "|" + "---|" * (len(columns) + 1)]
    winners = {}
    for metric, higher in (best or {}).items():
        means = {m: row[metric][0] for m, row in summary.items() if math.isfinite(row[metric][0])}
        winners[metric] = (max if higher else min)(means, key=means.get)
    for method, row in summary.items():
        cells = []
        for metric in columns:
            mean, std = row[metric]
            cell = f"{mean:.{digits}f} ± {std:.{digits}f}"
            cells.append(f"**{cell}**" if winners.get(metric) == method else cell)
        lines.append(f"| {NAMES.get(method, method)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ranks(summary: dict[str, dict[str, tuple]], metrics_used: dict[str, bool]) -> dict[str, float]:
    """Each method's mean rank (1 = best) over ``metrics_used`` ({metric: higher is better})."""
    methods = list(summary)
    total = dict.fromkeys(methods, 0.0)
    for metric, higher in metrics_used.items():
        order = sorted(methods, key=lambda m: summary[m][metric][0], reverse=higher)
        for place, method in enumerate(order, start=1):
            total[method] += place / len(metrics_used)
    return total


# --- cost -------------------------------------------------------------------------------------


def network_rows(
    model: nn.Module, classifier: nn.Module, images: Tensor, method: str, layer: str | None,
    batch_size: int | None = None, classes: Tensor | None = None,
) -> tuple[dict[str, float], Explanation]:
    """``(cost, explanation)`` of one :func:`camlib.explain` call. Cost per image: rows the whole
    network ran on (``full``), rows the classifier ran on (``evaluations``: whole network or
    from the layer onward), and the call's ``seconds``."""
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


def flatten_head(task: SceneTask, steps: int = 100, seed: int = 0) -> FlattenHead:
    """:class:`FlattenHead` on ``task.model``'s frozen features: only the linear layer is
    trained (full-batch AdamW on the training views)."""
    with torch.no_grad():
        features = task.model.features(task.train_views)
    model = FlattenHead(task.model.features, tuple(features.shape[1:]), len(GENERA))
    torch.manual_seed(seed)
    model.fc.reset_parameters()
    optimiser = torch.optim.AdamW(model.fc.parameters(), lr=3e-3, weight_decay=1e-2)
    flat = features.flatten(1)
    for _ in range(steps):
        loss = nn.functional.cross_entropy(model.fc(flat), task.train_labels)
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
