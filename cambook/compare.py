"""The CAM family side by side: every method, every metric, every sanity check, over
seeds.

- :func:`scene_task`: synthetic scenes (:func:`cambook.data.make_scenes`) and a small
  CAM-ready network trained to name the ring's colour (the genus, 4 classes) from the
  32-pixel global view;
- :func:`family_maps`: one map per image for each method, at the input's resolution;
- :func:`metric_table`: deletion and insertion AUC, average drop and increase, the
  pointing game, the share of the map's mass on the object and GT-known localisation at
  a validated threshold;
- :func:`sanity_table`: cascading and independent model randomisation, as Spearman and
  SSIM against the trained maps;
- :func:`data_randomisation`: a network that memorised shuffled labels against one
  trained on the true labels; too slow for the chapter, so run from the command line
  (:func:`main`: ``python -m cambook.compare data-randomisation --seeds 0 1 2 --json
  PATH``);
- :func:`summarise` and :func:`markdown_table`: mean and standard deviation over seeds.

What each method adds and what it costs (several instances, layers, heads, passes) is in
:mod:`cambook.family`.

Maps are those of :func:`camlib.explain` (ReLU, upsampled, scaled to [0, 1]) for the
true class.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from camlib import metrics, sanity
from . import data, enhance, randomisation
from camlib.explain import explain
from .networks import channels_last

FAMILY = (
    "cam",
    "gradcam",
    "gradcampp",
    "xgradcam",
    "layercam",
    "hirescam",
    "eigencam",
    "scorecam",
    "ablationcam",
)
NAMES = {
    "cam": "CAM",
    "gradcam": "Grad-CAM",
    "gradcampp": "Grad-CAM++",
    "xgradcam": "XGrad-CAM",
    "layercam": "LayerCAM",
    "hirescam": "HiResCAM",
    "eigencam": "Eigen-CAM",
    "scorecam": "Score-CAM",
    "ablationcam": "Ablation-CAM",
    "random": "control: random map",
    "centre": "control: centre map",
}
CONTROLS = ("random", "centre")  # maps that know nothing of the image: see control_maps
GENERA = (
    "red",
    "green",
    "blue",
    "yellow",
)  # the ring colours: class = genus of the scene
LAYER = "features"  # the last feature map of SmallCNN, the one that feeds the pooling


# --- the task -------------------------------------------------------------------------


@dataclass
class SceneTask:
    """One seed: a trained network and its validation and test scenes (global views,
    labels, full-resolution boxes and masks)."""

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
    """SmallCNN (:mod:`cambook.enhance`) on ``views`` for the 4 genera: AdamW, one-cycle
    schedule up to a learning rate of 3e-3, batches of 64 (set here, not taken from
    Chapter 4's defaults)."""
    torch.manual_seed(seed)
    config = enhance.Config(seed=seed, epochs=epochs, batch_size=64, learning_rate=3e-3)
    return enhance.train_classifier(
        enhance.SmallCNN(len(GENERA)), views, labels, config
    )


def scene_task(
    seed: int,
    n_train: int = 2000,
    n_validation: int = 100,
    n_test: int = 64,
    epochs: int = 5,
) -> SceneTask:
    """Scenes (seed ``30_000 + seed``) and a network trained from scratch on the
    genus."""
    clock = time.perf_counter()
    scenes = data.make_scenes(n_train + n_validation + n_test, seed=30_000 + seed)
    views = data.downsample(scenes[:n_train].float_images(), 4)
    labels = scenes[:n_train].labels // len(data.SPECIES)
    model = train(views, labels, seed, epochs)
    test = scenes[n_train + n_validation :]
    task = SceneTask(
        seed,
        model,
        views,
        labels,
        scenes[n_train : n_train + n_validation],
        test,
        math.nan,
        0.0,
    )
    with torch.no_grad():
        predicted = model(task.views("test")).argmax(1)
    task.accuracy = (predicted == task.labels("test")).float().mean().item()
    task.seconds = time.perf_counter() - clock
    return task


# --- maps and what they cover ---------------------------------------------------------


def family_maps(
    model: nn.Module,
    images: Tensor,
    classes: Tensor,
    methods: Sequence[str] = FAMILY,
    layer: str | None = LAYER,
    batch_size: int | None = None,
) -> dict[str, Tensor]:
    """``{method: maps [B, H, W]}`` of ``classes`` [B], each map ReLU'd, upsampled, in
    [0, 1]."""
    return {
        method: explain(
            model,
            images,
            method=method,
            layers=layer,
            classes=classes,
            batch_size=batch_size,
        ).maps[:, 0]
        for method in methods
    }


def mass_on(maps: Tensor, masks: Tensor) -> Tensor:
    """Share of each map's mass on its mask [B] (maps [B, h, w] are upsampled to the
    masks' size); 0 for an all-zero map. Wang et al.'s energy-based pointing game."""
    maps = metrics.image_maps(maps, masks.float())
    total = maps.flatten(1).sum(1)
    inside = (maps * masks).flatten(1).sum(1)
    return torch.where(
        total > 0, inside / total.clamp_min(1e-12), torch.zeros_like(total)
    )


def control_maps(
    count: int, size: int = 32, seed: int = 0, grid: int = 16
) -> dict[str, Tensor]:
    """Two maps [count, size, size] that know nothing of the image, for the metric
    table: ``random``, uniform noise on a ``grid`` x ``grid`` lattice (the family's
    feature grid) upsampled bilinearly, drawn from ``seed``; ``centre``, a Gaussian bump
    in the middle of the view (standard deviation a quarter of its side), the same for
    every image."""
    noise = torch.rand(
        count, 1, grid, grid, generator=torch.Generator().manual_seed(seed)
    )
    noise = torch.nn.functional.interpolate(
        noise, size=(size, size), mode="bilinear", align_corners=False
    )[:, 0]
    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    bump = torch.exp(-(x[:, None] ** 2 + x[None] ** 2) / (2 * (size / 4) ** 2))
    return {"random": noise, "centre": bump.expand(count, size, size).clone()}


# --- every metric ---------------------------------------------------------------------

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
    task: SceneTask,
    methods: Sequence[str] = FAMILY,
    steps: int = 16,
    baseline: str = "mean",
    tolerance: float = 8.0,
    controls: bool = False,
) -> dict[str, dict[str, float]]:
    """``{method: {metric: value}}`` on the test scenes, maps of the true genus.

    Deletion and insertion replace pixels of the 32-pixel view by ``baseline`` in
    ``steps`` steps; the pointing game's ``tolerance`` is in pixels of the 128-pixel
    scene; GT-known localisation uses the threshold (ratio of the maximum) that is best
    on the validation scenes. With ``controls``, the rows of :func:`control_maps` (seed:
    the task's) come last.
    """
    # channels-last views: the small CNN's convolutions run about twice as fast on the
    # CPU (the same numbers up to float rounding, about 1e-7)
    views, validation_views = (
        channels_last(task.views(part)) for part in ("test", "validation")
    )
    labels, test = task.labels("test"), task.test
    validation_maps = family_maps(
        task.model, validation_views, task.labels("validation"), methods, batch_size=512
    )
    maps = family_maps(task.model, views, labels, methods, batch_size=512)
    if controls:
        size = views.shape[-1]
        validation_maps |= control_maps(len(task.validation), size, 1000 + task.seed)
        maps |= control_maps(len(views), size, task.seed)
    everyone = torch.ones(len(task.validation), dtype=torch.bool)
    with torch.no_grad():
        correct = task.model(views).argmax(1) == labels
    table = {}
    for method, m in maps.items():
        curves = {
            mode: metrics.perturbation_curve(
                task.model,
                views,
                m,
                labels,
                mode,
                steps=steps,
                baseline=baseline,
                max_batch=512,
            )
            .auc.mean()
            .item()
            for mode in ("deletion", "insertion")
        }
        change = metrics.confidence_change(task.model, views, m, labels)
        sweep = metrics.threshold_sweep(
            validation_maps[method],
            task.validation.boxes,
            task.validation.masks,
            everyone,
        )
        ratio = max(sweep, key=lambda row: row["gt_known"])["ratio"]
        table[method] = {
            **curves,
            "average_drop": change.average_drop,
            "increase": change.increase_rate,
            "pointing": metrics.pointing_game(m, test.masks, tolerance)
            .float()
            .mean()
            .item(),
            "mass_on_object": mass_on(m, test.masks).mean().item(),
            "gt_known": metrics.localisation(m, test.boxes, test.masks, correct, ratio)[
                "gt_known"
            ],
            "ratio": ratio,
        }
    return table


# --- sanity checks --------------------------------------------------------------------

SANITY = {
    "top_spearman": "classifier re-initialised: Spearman",
    "cascade_spearman": "all layers re-initialised: Spearman",
    "cascade_ssim": "all layers: SSIM",
    "independent_spearman": "one layer at a time: mean Spearman",
}


@dataclass(frozen=True)
class Sanity:
    table: dict[str, dict[str, float]]  # {method: {check: value}}, the checks of SANITY
    steps: dict[
        str, list[tuple[str, float]]
    ]  # {method: [(layer, Spearman)]}, cascading


def sanity_table(
    task: SceneTask, methods: Sequence[str] = FAMILY, images: int = 32
) -> Sanity:
    """Model randomisation, cascading and independent (:mod:`camlib.sanity`), for every
    method on ``images`` test scenes, maps of the true genus: the checks of
    :data:`SANITY`, and the number of images each Spearman mean is over (``*_images``;
    the fewest for independent)."""
    views, labels = task.views("test")[:images], task.labels("test")[:images]
    table, steps = {}, {}
    for method in methods:
        cascade = sanity.cascading_randomisation(
            task.model, views, method, LAYER, labels, seed=task.seed
        ).table()
        independent = sanity.independent_randomisation(
            task.model, views, method, LAYER, labels, seed=task.seed
        ).table()
        table[method] = {
            "top_spearman": cascade[0]["spearman"],
            "cascade_spearman": cascade[-1]["spearman"],
            "cascade_ssim": cascade[-1]["ssim"],
            "independent_spearman": sum(row["spearman"] for row in independent)
            / len(independent),
            # images whose Spearman is defined (a constant map has none): the means'
            # counts
            "top_images": cascade[0]["images"],
            "cascade_images": cascade[-1]["images"],
            "independent_images": min(row["images"] for row in independent),
        }
        steps[method] = [(row["step"], row["spearman"]) for row in cascade]
    return Sanity(table, steps)


def data_randomisation(
    seed: int,
    methods: Sequence[str] = FAMILY,
    n_train: int = 128,
    n_test: int = 64,
    epochs: int = 200,
    batch_size: int = 16,
    learning_rate: float = 1e-2,
    widths: tuple[int, ...] = (16, 24, 32, 32),
) -> dict:
    """Adebayo et al.'s data randomisation for one seed, JSON-ready.

    New scenes (seed ``40_000 + seed``), their 32-pixel global views, the genus as the
    label. Two SmallCNNs, the same initial weights and the same budget, are trained on
    the same ``n_train`` views: one on the true genera, one on the genera shuffled
    (:func:`cambook.randomisation.shuffle_labels`). The check means something only if
    the second one *memorised* its labels (training accuracy near 1), so both networks'
    training and test accuracies are reported. For every method, the two networks' maps
    of the true genus on ``n_test`` held-out scenes are compared per image: Spearman
    (NaN, for a constant map, left out and the remaining images counted) and SSIM, as
    mean and standard deviation.
    """
    clock = time.perf_counter()
    scenes = data.make_scenes(n_train + n_test, seed=40_000 + seed)
    views = data.downsample(scenes.float_images(), 4)
    genera = scenes.labels // len(data.SPECIES)
    train, test = slice(0, n_train), slice(n_train, None)
    fitted = {
        "true labels": genera[train],
        "shuffled labels": randomisation.shuffle_labels(genera[train], seed),
    }
    networks, accuracy = {}, {}
    for name, labels in fitted.items():
        networks[name] = randomisation.train_scene_model(
            views[train],
            labels,
            seed,
            epochs,
            widths,
            batch_size,
            len(GENERA),
            learning_rate,
        )
        with torch.no_grad():
            accuracy[name] = {
                "training accuracy": enhance.accuracy(
                    networks[name](views[train]), labels
                ),
                "test accuracy": enhance.accuracy(
                    networks[name](views[test]), genera[test]
                ),
            }
    trained = family_maps(networks["true labels"], views[test], genera[test], methods)
    other = family_maps(networks["shuffled labels"], views[test], genera[test], methods)
    table = {}
    for method in methods:
        rho = sanity.spearman(trained[method], other[method])
        rho = rho[torch.isfinite(rho)]
        index = sanity.ssim(trained[method], other[method])
        table[method] = {
            "spearman": [_mean(rho), _std(rho)],
            "spearman_images": rho.numel(),
            "ssim": [_mean(index), _std(index)],
        }
    return {
        "seed": seed,
        "networks": accuracy,
        "methods": table,
        "seconds": time.perf_counter() - clock,
    }


def _mean(values: Tensor) -> float:
    return values.double().mean().item() if values.numel() else math.nan


def _std(values: Tensor) -> float:
    return values.double().std().item() if values.numel() > 1 else math.nan


# --- over seeds -----------------------------------------------------------------------


def summarise(
    tables: Sequence[dict[str, dict[str, float]]],
) -> dict[str, dict[str, tuple]]:
    """``{method: {metric: (mean, std)}}`` over the seeds' tables (std with n - 1; NaN
    left out)."""
    summary: dict[str, dict[str, tuple]] = {}
    for method in tables[0]:
        for metric in tables[0][method]:
            values = torch.tensor(
                [t[method][metric] for t in tables], dtype=torch.float64
            )
            values = values[torch.isfinite(values)]
            std = values.std().item() if values.numel() > 1 else math.nan
            mean = values.mean().item() if values.numel() else math.nan
            summary.setdefault(method, {})[metric] = (mean, std)
    return summary


def markdown_table(
    summary: dict[str, dict[str, tuple]],
    columns: dict[str, str],
    digits: int = 2,
    best: dict[str, bool] | None = None,
) -> str:
    """A Markdown table, one row per method, cells ``mean ± std``; with ``best``
    ({metric: higher is better}), the best mean of each column (as shown, so ties too)
    is in bold."""
    header = "| method | " + " | ".join(columns.values()) + " |"
    lines = [header, "|" + "---|" * (len(columns) + 1)]
    winners: dict[
        str, set
    ] = {}  # every method whose rounded mean equals the best rounded mean
    for metric, higher in (best or {}).items():
        means = {
            m: round(row[metric][0], digits)
            for m, row in summary.items()
            if math.isfinite(row[metric][0])
        }
        top = (max if higher else min)(means.values())
        winners[metric] = {m for m, value in means.items() if value == top}
    for method, row in summary.items():
        cells = []
        for metric in columns:
            mean, std = row[metric]
            # + 0.0 turns a mean that rounds to -0 into 0 (no "-0.000" in the table)
            cell = f"{round(mean, digits) + 0.0:.{digits}f} ± {std:.{digits}f}"
            cells.append(f"**{cell}**" if method in winners.get(metric, ()) else cell)
        lines.append(f"| {NAMES.get(method, method)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired_differences(
    tables: Sequence[dict[str, dict[str, float]]], reference: str = "cam"
) -> dict[str, dict[str, tuple]]:
    """:func:`summarise` of each method's value minus ``reference``'s in the same seed:
    the differences between methods without the spread between seeds that they share."""
    return summarise(
        [
            {
                m: {k: v - t[reference][k] for k, v in row.items()}
                for m, row in t.items()
            }
            for t in tables
        ]
    )


def ranks(
    summary: dict[str, dict[str, tuple]], metrics_used: dict[str, bool]
) -> dict[str, float]:
    """Each method's mean rank (1 = best) over ``metrics_used`` ({metric: higher is
    better})."""
    methods = list(summary)
    total = dict.fromkeys(methods, 0.0)
    for metric, higher in metrics_used.items():
        value = {m: summary[m][metric][0] for m in methods}
        for m in methods:
            tied = [o for o in methods if _tied(value[o], value[m])]  # m included
            ahead = [
                o for o in methods if o not in tied and (value[o] > value[m]) == higher
            ]
            # tied methods share the average of the places they occupy
            total[m] += (len(ahead) + (len(tied) + 1) / 2) / len(metrics_used)
    return total


def _tied(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * max(1.0, abs(a), abs(b))


# --- command line ---------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> dict:
    """``python -m cambook.compare data-randomisation --seeds 0 1 2 --json PATH``: run
    :func:`data_randomisation` for each seed and write the results, with the date, the
    machine, the versions and the settings, as JSON (Chapter 6 reads
    ``cambook/results/``)."""
    import argparse
    import sys

    from .provenance import record, write

    parser = argparse.ArgumentParser(prog="python -m cambook.compare")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("data-randomisation", help="true against shuffled labels")
    run.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    run.add_argument("--json", help="where to write the results (default: print them)")
    run.add_argument("--methods", nargs="+", default=list(FAMILY), choices=FAMILY)
    run.add_argument("--n-train", type=int, default=128)
    run.add_argument("--n-test", type=int, default=64)
    run.add_argument("--epochs", type=int, default=200)
    run.add_argument("--batch-size", type=int, default=16)
    run.add_argument("--learning-rate", type=float, default=1e-2)
    run.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = {
        "n_train": args.n_train,
        "n_test": args.n_test,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "widths": [16, 24, 32, 32],
        "methods": list(args.methods),
        "labels": "genus (4 classes)",
        "threads": args.threads,
    }
    seeds = []
    for i, seed in enumerate(args.seeds):
        result = data_randomisation(
            seed,
            args.methods,
            args.n_train,
            args.n_test,
            args.epochs,
            args.batch_size,
            args.learning_rate,
        )
        nets = result["networks"]
        print(
            f"[{i + 1}/{len(args.seeds)}] seed {seed}: "
            f"{result['seconds']:.0f} s; training "
            f"accuracy true {nets['true labels']['training accuracy']:.2f}, shuffled "
            f"{nets['shuffled labels']['training accuracy']:.2f}",
            file=sys.stderr,
            flush=True,
        )
        seeds.append(result)
    meta = {**record("cambook.compare", argv), "settings": settings}
    output = {"meta": meta, "seeds": seeds}
    write(output, args.json)
    return output


if __name__ == "__main__":
    main()
