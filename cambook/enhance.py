"""CAM-enhanced classification: use the map to decide where to look closer, and measure
the gain.

Pieces (each usable alone): crop windows from CAM boxes, CAM peaks, the centre, random
places, or the true box as an oracle (the windows and crops themselves are in
:mod:`cambook.crops`, the small classifier and its grouped form in
:mod:`cambook.networks`), the training loop (optionally with CAM-guided crops and drops,
after WS-DAN: :mod:`cambook.wsdan`), and weakly supervised localisation metrics (in
:mod:`camlib.metrics`); the same zoom on a real photo is :func:`cambook.zoom.zoom_in`.
:func:`run_experiment` runs everything from scratch for one seed, training one stage-2
network per crop policy on that policy's own crops (fair controls); ``python -m
cambook.enhance --seed 0 1 2 --json results.json`` runs it from the shell.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from camlib import metrics
from . import data
from camlib.explain import explain
from camlib.metrics import (
    localisation,
)  # weakly supervised localisation: one module for the book

# windows, crops and the networks live in their own modules; their names stay importable
# from here
from .crops import (
    _crop,
    centred_windows,
    check_boxes,
    crop,
    peak_windows,
    random_windows,
)  # noqa: F401
from .crops import square_windows
from .networks import GroupedCNN, SmallCNN, channels_last

# Config is part of this module's API
from .settings import Config, Forward  # noqa: F401
from camlib.postprocess import to_image_maps
from .wsdan import attention_forward, attention_windows, step_cam  # noqa: F401


@dataclass(frozen=True)
class TwoStage:
    """Every intermediate of the two-stage pipeline on a batch of full-resolution
    scenes."""

    views: Tensor  # the global views [N, 3, s, s]
    first: Tensor  # stage-1 probabilities [N, classes]
    maps: Tensor  # stage-1 CAM of its predicted class [N, m, m]
    windows: Tensor  # square crop windows in full-resolution pixels [N, 4]
    crops: Tensor  # what stage 2 sees [N, 3, input, input]
    second: Tensor  # stage-2 probabilities [N, classes]


def two_stage(
    stage1: nn.Module, stage2: nn.Module, images: Tensor, config: "Config"
) -> TwoStage:
    """Look (stage 1 on the global view), find (CAM, Zhou box), zoom (crop the
    full-resolution scene), classify again (stage 2)."""
    views = global_view(images, config)
    first = probabilities(stage1, views)
    windows, maps = cam_windows(stage1, views, first.argmax(1), config)
    crops = crop(images, windows, config.input_size)
    return TwoStage(views, first, maps, windows, crops, probabilities(stage2, crops))


def device_of(config: Config) -> torch.device:
    return torch.device(
        config.device or ("cuda" if torch.cuda.is_available() else "cpu")
    )


def global_view(images: Tensor, config: Config) -> Tensor:
    """What the first-stage classifier sees: the whole scene at 1/factor resolution."""
    return data.downsample(images, config.factor)


def cam_maps(model: nn.Module, views: Tensor, classes: Tensor, size: int) -> Tensor:
    """CAM of ``classes`` [N] on the low-resolution ``views``, as [N, size, size]
    maps."""
    exp = explain(model, views, method="cam", classes=classes)
    return to_image_maps(exp.raw["features"], (size, size))[:, 0]


def map_boxes(maps: Tensor, ratio: float, image_size: int) -> Tensor:
    """Zhou boxes of [N, s, s] maps, in full-resolution pixels of an ``image_size``
    image."""
    return metrics.map_boxes(maps, ratio, (image_size, image_size))


def cam_windows(
    model: nn.Module,
    views: Tensor,
    classes: Tensor,
    config: Config,
    map_size: int | None = None,
) -> tuple[Tensor, Tensor]:
    """(square windows [N, 4] in full-resolution pixels, maps [N, s, s]) from the CAM of
    ``classes`` on the low-resolution ``views``: Zhou box, enlarged by the margin."""
    maps = cam_maps(model, views, classes, map_size or config.map_size)
    boxes = map_boxes(maps, config.ratio, config.image_size)
    return square_windows(
        boxes, config.image_size, config.margin, config.min_side
    ), maps


def train_classifier(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    config: Config,
    forward: Forward | None = None,
    progress: Callable[[int], None] | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
) -> nn.Module:
    """AdamW with a one-cycle schedule on ``images`` (already classifier-sized), on
    their device.

    ``forward(model, index, batch, target)`` may replace the plain ``[model(batch)]``:
    it returns a list of logits for the same labels (the batch, CAM crops, CAM drops),
    each adding its own cross-entropy term, as in WS-DAN. Logits ``[B, G, classes]`` (a
    :class:`GroupedCNN`) add one term per group. The loop never waits for the device (no
    ``.item()``).
    """
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            "images and labels: expected the same count, got "
            f"{images.shape[0]} and {labels.shape[0]}"
        )
    epochs, batch_size = epochs or config.epochs, batch_size or config.batch_size
    generator = torch.Generator().manual_seed(config.seed)
    steps_per_epoch = math.ceil(images.shape[0] / batch_size)
    optimiser = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=1e-4
    )
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, config.learning_rate, total_steps=epochs * steps_per_epoch
    )
    labels = labels.to(images.device)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(images.shape[0], generator=generator).to(images.device)
        for start in range(0, images.shape[0], batch_size):
            index = order[start : start + batch_size]
            batch, target = images[index], labels[index]
            outputs = (
                forward(model, index, batch, target) if forward else [model(batch)]
            )
            loss = sum(_cross_entropy(logits, target) for logits in outputs)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
        if progress:
            progress(1)
    return model.eval()


def _cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    if logits.ndim == 3:  # [B, G, classes]: the sum of the groups' mean losses
        groups = logits.shape[1]
        return (
            F.cross_entropy(logits.transpose(1, 2), target[:, None].expand(-1, groups))
            * groups
        )
    return F.cross_entropy(logits, target)


@torch.no_grad()
def probabilities(model: nn.Module, inputs: Tensor, batch_size: int = 500) -> Tensor:
    """Softmax over the last axis of the logits ([N, classes], or [N, G, classes])."""
    model.eval()
    return torch.cat(
        [
            model(inputs[i : i + batch_size]).softmax(-1)
            for i in range(0, inputs.shape[0], batch_size)
        ]
    )


# --- the whole experiment -------------------------------------------------------------

POLICIES = (
    "CAM box crop",
    "CAM peak window",
    "centre crop (same size)",
    "random crop (same size)",
    "oracle crop (true box)",
)


@dataclass
class Experiment:
    """Results of one seed: accuracies per policy (crop alone and fused with the global
    view, by the policy's own stage-2 network and by the one trained on CAM crops),
    localisation at Zhou's threshold and at the validated one, the threshold curve,
    timings."""

    config: Config
    accuracy: dict[str, dict[str, float]] = field(default_factory=dict)
    localisation: dict[str, dict[str, float]] = field(default_factory=dict)
    threshold_curve: list[dict[str, float]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    peak_side: float = float("nan")  # the peak window's side, in scene pixels
    # stage 1's validation accuracy after each training attempt (:func:`train_stage1`)
    stage1_attempts: list[float] = field(default_factory=list)
    validated_ratio: float = float(
        "nan"
    )  # the threshold chosen on the validation scenes
    # trained models and test scenes, for figures; not part of the saved results
    artifacts: dict = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict:
        return {key: value for key, value in asdict(self).items() if key != "artifacts"}


def policy_windows(
    maps: Tensor,
    windows: Tensor,
    boxes: Tensor,
    peak_side: float,
    config: Config,
    generator: torch.Generator,
) -> dict[str, Tensor]:
    """Windows [N, 4] of every crop policy, in :data:`POLICIES` order, for scenes whose
    stage-1 CAM ``maps`` [N, s, s] gave the CAM ``windows``; ``boxes`` are the true
    boxes (oracle only). Centre and random windows take the CAM windows' sides; peak
    windows are ``peak_side`` pixels wide."""
    sides = windows[:, 2] - windows[:, 0]
    scale = config.image_size / maps.shape[-1]
    return dict(
        zip(
            POLICIES,
            (
                windows,
                peak_windows(maps, peak_side / scale) * scale,
                centred_windows(sides, config.image_size),
                random_windows(sides, config.image_size, generator),
                square_windows(
                    boxes, config.image_size, config.margin, config.min_side
                ),
            ),
        )
    )


def make_splits(
    config: Config, device: torch.device
) -> tuple[data.Scenes, data.Scenes, data.Scenes]:
    """The training, validation and test scenes of ``config.seed``, on ``device``."""
    splits = (config.n_train, config.n_validation, config.n_test)
    scenes = data.make_scenes(
        sum(splits), seed=10_000 + config.seed, size=config.image_size
    )
    scenes = data.Scenes(
        *(
            tensor.to(device)
            for tensor in (scenes.images, scenes.labels, scenes.boxes, scenes.masks)
        )
    )
    ends = (splits[0], splits[0] + splits[1])
    return scenes[: ends[0]], scenes[ends[0] : ends[1]], scenes[ends[1] :]


def check_stage1(config: Config = Config()) -> dict[str, float | int | list[float]]:
    """Stage 1 alone, exactly as :func:`run_experiment` trains it for ``config.seed``:
    the validation accuracy of every attempt, and the global view's test accuracy."""
    device = device_of(config)
    torch.manual_seed(config.seed)
    train, validation, test = make_splits(config, device)
    views = [
        global_view(split.float_images(), config) for split in (train, validation, test)
    ]
    net, attempts = train_stage1(
        views[0], train.labels, views[1], validation.labels, config, device
    )
    return {
        "seed": config.seed,
        "attempts": attempts,
        "global_view_test": accuracy(probabilities(net, views[2]), test.labels),
    }


def run_experiment(config: Config = Config(), progress: bool = False) -> Experiment:
    """Data, training and evaluation from scratch for ``config.seed``, on
    ``config.device``."""
    from tqdm.auto import tqdm

    device, started = device_of(config), time.perf_counter()
    torch.manual_seed(config.seed)
    result = Experiment(config)
    total_epochs = (
        config.epochs * (1 + len(config.single_networks)) + config.stage2_epochs
    )
    bar = tqdm(total=total_epochs, desc=f"seed {config.seed}", disable=not progress)
    clock = time.perf_counter()
    train, validation, test = make_splits(config, device)
    full = {"train": train.float_images(), "test": test.float_images()}
    views = {
        "train": global_view(full["train"], config),
        "test": global_view(full["test"], config),
        "validation": global_view(validation.float_images(), config),
    }
    result.seconds["data"] = time.perf_counter() - clock

    # Stage 1: the global classifier (restarted if it did not learn), and its CAM of the
    # true class on the training scenes.
    clock = time.perf_counter()
    stage1, result.stage1_attempts = train_stage1(
        views["train"],
        train.labels,
        views["validation"],
        validation.labels,
        config,
        device,
        progress=bar.update,
    )
    train_windows, train_maps = cam_windows(
        stage1, views["train"], train.labels, config
    )
    result.seconds["stage 1"] = time.perf_counter() - clock

    # Stage 2: one close-up classifier per crop policy, each trained on that policy's
    # crops of the training scenes, with the same budget; the five train as one grouped
    # network.
    clock = time.perf_counter()
    generator = torch.Generator().manual_seed(config.seed)
    peak_side = float((train_windows[:, 2] - train_windows[:, 0]).median())
    windows = policy_windows(
        train_maps, train_windows, train.boxes, peak_side, config, generator
    )
    crops = torch.cat(
        [crop(full["train"], w, config.input_size) for w in windows.values()], dim=1
    )
    stage2 = GroupedCNN(
        [SmallCNN(len(data.SCENE_CLASSES), config.widths) for _ in POLICIES]
    )
    stage2 = stage2.to(device, memory_format=torch.channels_last)
    train_classifier(
        stage2,
        channels_last(crops),
        train.labels,
        config,
        progress=bar.update,
        epochs=config.stage2_epochs,
        batch_size=config.stage2_batch_size,
    )
    del crops
    result.seconds["stage 2 (five networks)"] = time.perf_counter() - clock

    # Test: stage 1 on the global view, its CAM of the predicted class, every policy's
    # crop, classified by the policy's own network ("fair") and by the CAM-trained one
    # ("shared").
    clock = time.perf_counter()
    cam_net = stage2.member(POLICIES.index("CAM box crop"))
    pipeline = two_stage(stage1, cam_net, full["test"], config)
    p_global, labels = pipeline.first, test.labels
    windows = policy_windows(
        pipeline.maps, pipeline.windows, test.boxes, peak_side, config, generator
    )
    crops = {
        name: crop(full["test"], w, config.input_size) for name, w in windows.items()
    }
    p_fair = probabilities(
        stage2, channels_last(torch.cat(list(crops.values()), dim=1))
    )
    result.accuracy["global view (stage 1)"] = _scores(None, p_global, labels)
    for group, (name, policy_crops) in enumerate(crops.items()):
        p_shared = probabilities(cam_net, policy_crops)
        result.accuracy[name] = {
            **_scores(p_fair[:, group], p_global, labels),
            **_scores(p_shared, p_global, labels, "shared "),
        }
    result.seconds["test"] = time.perf_counter() - clock

    # One network, attention-guided training (WS-DAN style), optionally with CAM-guided
    # drops.
    for variant in config.single_networks:
        clock = time.perf_counter()
        net = _new_net(config, device)
        forward = attention_forward(
            full["train"], config, drop=variant == "crops + drops"
        )
        train_classifier(
            net,
            channels_last(views["train"]),
            train.labels,
            config,
            forward,
            progress=bar.update,
        )
        p_whole = probabilities(net, views["test"])
        maps = cam_maps(net, views["test"], p_whole.argmax(1), config.training_map_size)
        p_zoom = probabilities(
            net, crop(full["test"], attention_windows(maps, config), config.input_size)
        )
        result.accuracy[f"single network: CAM {variant}"] = {
            **_scores(p_zoom, p_whole, labels),
            **_scores(None, None, labels, "shared "),
        }
        result.seconds[f"single network: CAM {variant}"] = time.perf_counter() - clock

    # Weakly supervised localisation with stage 1's maps of the true class.
    clock = time.perf_counter()
    correct = p_global.argmax(1) == labels
    true_class_maps = cam_maps(stage1, views["test"], labels, config.map_size)
    validation_maps = cam_maps(
        stage1, views["validation"], validation.labels, config.map_size
    )
    everything = torch.ones(len(validation), dtype=torch.bool, device=device)
    best_ratio, best = config.ratio, -1.0
    for ratio in config.thresholds:
        on_validation = localisation(
            validation_maps, validation.boxes, validation.masks, everything, ratio
        )["gt_known"]
        on_test = localisation(true_class_maps, test.boxes, test.masks, correct, ratio)
        result.threshold_curve.append(
            {"ratio": ratio, "validation_gt_known": on_validation, **on_test}
        )
        if on_validation > best:
            best_ratio, best = ratio, on_validation
    result.localisation["Zhou threshold (0.2)"] = localisation(
        true_class_maps, test.boxes, test.masks, correct, config.ratio
    )
    # one key for every seed (seeds may validate different ratios: validated_ratio)
    result.localisation["validated threshold"] = localisation(
        true_class_maps, test.boxes, test.masks, correct, best_ratio
    )
    result.seconds["localisation"] = time.perf_counter() - clock
    result.seconds["total"] = time.perf_counter() - started
    result.peak_side, result.validated_ratio = peak_side, best_ratio
    result.artifacts = {
        "stage1": stage1,
        "stage2": cam_net,
        "stage2_grouped": stage2,
        "test": test,
    }
    bar.close()
    return result


def learned_bound(config: Config) -> float:
    """The validation accuracy above which stage 1 counts as trained: ``learned_factor``
    times chance. A network that learned nothing scores about chance (1 in 8); one that
    names the genus and guesses the species, about 1 in 2."""
    return config.learned_factor / len(data.SCENE_CLASSES)


def train_stage1(
    views: Tensor,
    labels: Tensor,
    validation_views: Tensor,
    validation_labels: Tensor,
    config: Config,
    device: torch.device,
    progress: Callable[[int], None] | None = None,
) -> tuple[SmallCNN, list[float]]:
    """Stage 1 with a restart rule: train on the global ``views``; if the validation
    accuracy stays below :func:`learned_bound`, start again from a fresh initialisation
    and data order (at most ``config.stage1_restarts`` times). Returns the last network
    and the validation accuracy of every attempt. The first attempt is the plain run: a
    seed that learns at once is not changed by the rule."""
    attempts: list[float] = []
    for attempt in range(1 + config.stage1_restarts):
        run = config
        if attempt:  # a fresh initialisation and data order, the data unchanged
            run = replace(config, seed=config.seed + 1_000_000 * attempt)
            torch.manual_seed(run.seed)
        net = _new_net(config, device)
        train_classifier(net, channels_last(views), labels, run, progress=progress)
        scores = probabilities(net, validation_views)
        attempts.append(accuracy(scores, validation_labels))
        if attempts[-1] >= learned_bound(config):
            break
    return net, attempts


def _new_net(config: Config, device: torch.device) -> SmallCNN:
    net = SmallCNN(len(data.SCENE_CLASSES), config.widths)
    return net.to(device, memory_format=torch.channels_last)


def _scores(
    p_crop: Tensor | None, p_global: Tensor | None, labels: Tensor, prefix: str = ""
) -> dict[str, float]:
    """Accuracy of the crop alone and fused (mean probabilities) with the global view;
    NaN where a column does not apply."""
    nan = float("nan")
    crop_alone = accuracy(p_crop, labels) if p_crop is not None else nan
    fused = (
        p_global
        if p_crop is None
        else (p_crop + p_global) / 2
        if p_global is not None
        else None
    )
    return {
        f"{prefix}crop": crop_alone,
        f"{prefix}fused": accuracy(fused, labels) if fused is not None else nan,
    }


def accuracy(scores: Tensor, labels: Tensor) -> float:
    """Share of rows of ``scores`` [N, classes] (logits or probabilities) whose argmax
    is the label."""
    return (scores.argmax(1) == labels).float().mean().item()


# --- several seeds, and the command line ----------------------------------------------


def summarise(
    experiments: Sequence[Experiment | dict],
) -> dict[str, dict[str, dict[str, float]]]:
    """Mean and standard deviation over seeds of every accuracy and localisation figure;
    each seed an :class:`Experiment` or its :meth:`Experiment.to_dict` (as read from a
    results file)."""
    runs = [e if isinstance(e, dict) else e.to_dict() for e in experiments]

    def stats(values: list[float]) -> dict[str, float]:
        tensor = torch.tensor(values, dtype=torch.float64)
        std = tensor.std(unbiased=True).item() if len(values) > 1 else 0.0
        return {"mean": tensor.mean().item(), "std": std}

    table: dict[str, dict[str, dict[str, float]]] = {}
    for section in ("accuracy", "localisation"):
        for policy in runs[0][section]:
            for metric in runs[0][section][policy]:
                values = [run[section][policy][metric] for run in runs]
                table.setdefault(f"{section}: {policy}", {})[metric] = stats(values)
    return table


def paired_points(
    experiments: Sequence[Experiment | dict],
    policy: str,
    other: str,
    metric: str = "crop",
    alone: str = "global view (stage 1)",
) -> Tensor:
    """``policy``'s test accuracy minus ``other``'s on each seed, in points: the paired
    difference. Both are read in ``metric`` (``"crop"`` or ``"fused"``), except
    ``alone``, stage 1's global view, which has no crop and is read in ``"fused"``."""
    runs = [e if isinstance(e, dict) else e.to_dict() for e in experiments]
    column = {policy: metric, other: metric, alone: "fused"}
    return torch.tensor(
        [
            100
            * (
                run["accuracy"][policy][column[policy]]
                - run["accuracy"][other][column[other]]
            )
            for run in runs
        ],
        dtype=torch.float64,
    )


def clears_bar(differences: Tensor) -> bool:
    """The chapter's rule for a gain: the paired difference is positive on every seed
    and its mean exceeds its standard deviation over the seeds."""
    return bool((differences > 0).all()) and float(differences.mean()) > float(
        differences.std()
    )


def run_seeds(
    seeds: Sequence[int],
    config: Config = Config(),
    progress: bool = False,
    experiments: list[Experiment] | None = None,
) -> dict:
    """Run every seed from scratch; the table of mean and std. Pass a list as
    ``experiments`` to keep the runs themselves (with their models) too."""
    runs = [
        run_experiment(Config(**{**asdict(config), "seed": seed}), progress)
        for seed in seeds
    ]
    if experiments is not None:
        experiments.extend(runs)
    return {
        "seeds": list(seeds),
        "summary": summarise(runs),
        "runs": [e.to_dict() for e in runs],
    }


def _stage1_message(seed: int, attempts: Sequence[float], config: Config) -> str:
    """One line on whether stage 1 learned (validation accuracy against the bound)."""
    bound = learned_bound(config)
    tried = ", ".join(f"{a:.3f}" for a in attempts)
    if attempts[-1] < bound:
        return (
            f"seed {seed}: WARNING: stage 1 did not learn: validation accuracy"
            f" {tried} in {len(attempts)} attempts, all below {bound:.3f}"
            f" ({config.learned_factor:g} x chance); this seed's figures are not"
            " the chapter's experiment"
        )
    if len(attempts) > 1:
        return (
            f"seed {seed}: stage 1 restarted: validation accuracy {tried}"
            f" (bound {bound:.3f}); the last attempt learned"
        )
    return (
        f"seed {seed}: stage 1 learned (validation accuracy {tried}, bound {bound:.3f})"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m cambook.enhance", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--seed", type=int, nargs="+", default=[0], help="one or more seeds"
    )
    parser.add_argument("--json", help="write the results table here")
    parser.add_argument("--epochs", type=int, default=Config.epochs)
    parser.add_argument("--stage2-epochs", type=int, default=Config.stage2_epochs)
    parser.add_argument("--n-train", type=int, default=Config.n_train)
    parser.add_argument("--n-test", type=int, default=Config.n_test)
    parser.add_argument(
        "--single-network",
        nargs="*",
        default=[],
        choices=["crops", "crops + drops"],
        help="also train WS-DAN-style single networks (slow)",
    )
    parser.add_argument("--device", help="cpu, cuda, ... (default: CUDA when present)")
    parser.add_argument(
        "--stage1-only",
        action="store_true",
        help="train and test stage 1 only, to check that it learns",
    )
    args = parser.parse_args(argv)
    config = Config(
        epochs=args.epochs,
        stage2_epochs=args.stage2_epochs,
        n_train=args.n_train,
        n_test=args.n_test,
        device=args.device,
        single_networks=tuple(args.single_network),
    )
    if args.stage1_only:  # the file is rewritten after every seed: a long run keeps
        results = {"seeds": [], "bound": learned_bound(config), "runs": []}  # its seeds
        for seed in args.seed:
            row = check_stage1(replace(config, seed=seed))
            results["seeds"].append(seed)
            results["runs"].append(row)
            print(
                _stage1_message(seed, row["attempts"], config)
                + f"; global view on the test scenes {row['global_view_test']:.3f}",
                flush=True,
            )
            if args.json:
                _write_results(results, args.json, argv)
        return
    else:
        results = run_seeds(args.seed, config, progress=True)
        seconds = [run["seconds"]["total"] for run in results["runs"]]
        print(
            f"{len(seconds)} seed(s) on {device_of(config)}: "
            f"{', '.join(f'{s:.1f}' for s in seconds)} s each"
        )
        for run in results["runs"]:
            seed, attempts = run["config"]["seed"], run["stage1_attempts"]
            print(_stage1_message(seed, attempts, config))
        for row, values in results["summary"].items():
            cells = ", ".join(
                f"{m} {v['mean']:.3f} +- {v['std']:.3f}"
                for m, v in values.items()
                if not math.isnan(v["mean"])
            )
            print(f"{row}: {cells}")
    if args.json:
        _write_results(results, args.json, argv)
        print(f"wrote {args.json}")


def _write_results(results: dict, path: str, argv: Sequence[str] | None) -> None:
    from .provenance import record

    results["meta"] = record("cambook.enhance", argv)
    with open(path, "w") as handle:
        handle.write(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
