"""What each member of the CAM family adds, and what it costs: the demonstrations of
Chapter 5 (the family) and Chapter 6 (its evaluation).

- :func:`network_rows`, :func:`forward_seconds`: network evaluations per image (counted
  with hooks) and time against a plain forward pass;
- :func:`speed_ratios`, :func:`speed_markdown`: the cost table, read from the results of
  ``benchmarks/family_speed.py`` at the resolution one run supports;
- :func:`instance_table`: two objects of one class side by side, how the map shares
  itself;
- :func:`layer_table`: the map's mass on the object at several depths;
- :class:`FlattenHead`, :func:`head_table`: a head that is not GAP + linear, where
  Grad-CAM and HiResCAM part ways;
- :func:`identical_groups`, :func:`merge_identical`, :func:`verdict_table`: tables in
  which methods whose maps coincide share one row.

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


# --- cost -----------------------------------------------------------------------------


def network_rows(
    model: nn.Module,
    classifier: nn.Module,
    images: Tensor,
    method: str,
    layer: str | None,
    batch_size: int | None = None,
    classes: Tensor | None = None,
    warm_up: bool = True,
) -> tuple[dict[str, float], Explanation]:
    """``(cost, explanation)`` of one :func:`camlib.explain` call. Cost per image: rows
    the whole network ran on (``full``), rows the classifier ran on (``evaluations``:
    whole network or from the layer onward), and the call's ``seconds``. With
    ``warm_up``, one uncounted, untimed call on the first image comes first, so the time
    leaves out one-off set-up."""
    if warm_up:
        explain(
            model,
            images[:1],
            method,
            layer,
            None if classes is None else classes[:1],
            batch_size=batch_size,
        )
    counts = {"full": 0, "evaluations": 0}

    def count(key: str):
        def hook(_module, inputs, _output=None):
            counts[key] += inputs[0].shape[0]

        return hook

    handles = [
        model.register_forward_pre_hook(count("full")),
        classifier.register_forward_hook(count("evaluations")),
    ]
    try:
        clock = time.perf_counter()
        exp = explain(model, images, method, layer, classes, batch_size=batch_size)
        seconds = time.perf_counter() - clock
    finally:
        for handle in handles:
            handle.remove()
    batch = images.shape[0]
    cost = {
        "full": counts["full"] / batch,
        "evaluations": counts["evaluations"] / batch,
        "seconds": seconds,
    }
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


# --- heads that are not GAP + linear --------------------------------------------------


class FlattenHead(nn.Module):
    """A trained network's convolutions, then flatten and one linear layer over all K x
    h x w positions: a head where the gradient of a class score differs from place to
    place."""

    def __init__(
        self, features: nn.Module, shape: tuple[int, int, int], classes: int
    ) -> None:
        super().__init__()
        self.features = features
        self.fc = nn.Linear(math.prod(shape), classes)

    def forward(self, images: Tensor) -> Tensor:
        return self.fc(self.features(images).flatten(1))


def flatten_head(
    task: SceneTask, steps: int = 60, seed: int = 0, views: int = 1000
) -> FlattenHead:
    """:class:`FlattenHead` on ``task.model``'s frozen features: only the linear layer
    is trained (full-batch AdamW on the first ``views`` training views)."""
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


# --- several instances ----------------------------------------------------------------


def instance_pairs(
    scenes: data.Scenes, labels: Tensor, count: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Up to ``count`` pairs of scenes of the same class, side by side: global views [N,
    3, 32, 64], their class [N], and each object's mask at full resolution [N, 2, 128,
    256] (left object, right object)."""
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
    masks = torch.stack(
        [
            torch.cat([scenes.masks[left], blank], -1),
            torch.cat([blank, scenes.masks[right]], -1),
        ],
        dim=1,
    )
    return pairs, labels[left], masks


def instance_table(
    task: SceneTask, count: int = 32, methods: Sequence[str] = FAMILY
) -> dict[str, dict[str, float]]:
    """Pairs of test scenes of one genus side by side (:func:`instance_pairs`): per
    method, the mean share of the on-object mass that the *weaker* object gets (0.5:
    both alike) and the mean share of the map's mass on the two objects together."""
    pairs, classes, masks = instance_pairs(task.test, task.labels("test"), count)
    maps = family_maps(task.model, pairs, classes, methods, batch_size=512)
    table = {}
    for method, m in maps.items():
        left, right = mass_on(m, masks[:, 0]), mass_on(m, masks[:, 1])
        both = left + right
        weaker = torch.minimum(left, right) / both.clamp_min(1e-12)
        table[method] = {"weaker": weaker.mean().item(), "both": both.mean().item()}
    return table


def layer_table(
    task: SceneTask, layers: Sequence[str], methods: Sequence[str]
) -> dict[str, dict[str, float]]:
    """``{method: {layer: mean share of the map's mass on the object}}`` on the test
    scenes."""
    views, labels = task.views("test"), task.labels("test")
    return {
        method: {
            layer: mass_on(
                family_maps(task.model, views, labels, [method], layer)[method],
                task.test.masks,
            )
            .mean()
            .item()
            for layer in layers
        }
        for method in methods
    }


def head_table(
    task: SceneTask, methods: Sequence[str] = ("gradcam", "hirescam"), steps: int = 16
) -> dict[str, dict[str, float]]:
    """The same features under a flatten + linear head (:func:`flatten_head`): per
    method, the deletion and insertion AUC, the mass on the object, and how far the raw
    map's sum is from ``S_c - b_c`` (relative to ``|S_c - b_c|``); ``"both"`` holds the
    head's accuracy and the Spearman correlation between the first two methods' maps."""
    head = flatten_head(task)
    views, labels = task.views("test"), task.labels("test")
    table, maps = {}, {}
    for method in methods:
        exp = explain(head, views, method, "features", labels)
        maps[method] = exp.maps[:, 0]
        score = (
            exp.logits.gather(1, labels[:, None])[:, 0] - head.fc.bias.detach()[labels]
        )
        total = exp.raw["features"][:, 0].sum(dim=(-2, -1))
        table[method] = {
            **{
                mode: metrics.perturbation_curve(
                    head,
                    views,
                    maps[method],
                    labels,
                    mode,
                    steps=steps,
                    baseline="mean",
                )
                .auc.mean()
                .item()
                for mode in ("deletion", "insertion")
            },
            "mass_on_object": mass_on(maps[method], task.test.masks).mean().item(),
            "sum_error": ((total - score).abs() / score.abs().clamp_min(1e-6))
            .median()
            .item(),
        }
    with torch.no_grad():
        accuracy = (head(views).argmax(1) == labels).float().mean().item()
    rho = sanity.spearman(*(maps[m] for m in methods[:2]))
    table["both"] = {
        "accuracy": accuracy,
        "spearman": rho[torch.isfinite(rho)].mean().item(),
    }
    return table


# --- the cost table, read from benchmarks/family_speed.py's results -------------------

# (row label, work per image by definition, key of camlib's ratio,
#  key of the peer's ratio)
SPEED_ROWS = (
    (
        "Grad-CAM, Grad-CAM++, XGrad-CAM, LayerCAM, HiResCAM",
        "1 forward + 1 backward",
        "camlib gradient",
        "pgc gradient",
    ),
    ("Eigen-CAM", "1 forward + 1 SVD", "camlib eigencam", None),
    (
        "Ablation-CAM, layer feeding GAP + linear",
        "1 forward (closed form)",
        "camlib ablationcam",
        "pgc ablationcam",
    ),
    (
        "Ablation-CAM, same layer, closed form off",
        "1 forward + K passes of the tail (here GAP + linear)",
        "camlib ablationcam tail",
        None,
    ),
    ("Score-CAM", "1 + K forward passes", "camlib scorecam", "pgc scorecam"),
)
GRADIENT_METHODS = ("gradcam", "gradcampp", "xgradcam", "layercam", "hirescam")


def _seconds_per_image(row: dict) -> float | None:
    """Seconds per image of the row's fastest round where it records its ``rounds``
    (other work on the machine can only slow a round down, so the fastest is the least
    disturbed), else of the row as a whole."""
    seconds, images = row.get("seconds"), row.get("images")
    if isinstance(row.get("seconds_per_image"), (int, float)):
        per_image = float(row["seconds_per_image"])
    elif (
        isinstance(seconds, (int, float))
        and isinstance(images, (int, float))
        and images
    ):
        per_image = float(seconds) / float(images)
    else:
        return None
    rounds = row.get("rounds")
    if rounds and isinstance(seconds, (int, float)) and seconds > 0:
        return per_image * min(rounds) / float(seconds)
    return per_image


def speed_ratios(bench: dict) -> dict[str, float]:
    """Time per image over a plain forward pass's, from ``family_speed.json``'s rows,
    found by the words of their names; a row that is missing is left out. Keys: ``camlib
    gradient`` (the slowest gradient method), ``camlib eigencam``, ``camlib
    ablationcam`` (closed form), ``camlib ablationcam tail`` (tail reruns), ``camlib
    scorecam`` (the first such row: the default batch size), ``pgc gradient`` (its
    slowest gradient method), ``pgc ablationcam``, ``pgc scorecam``, ``torchcam
    scorecam``. Each row's time is its fastest round where it records rounds."""
    rows = []
    for row in bench.get("results", []):
        name = str(row.get("method", row.get("name", ""))).lower()
        name = name.replace("pytorch-grad-cam", "pgc").replace("-", "").replace("_", "")
        seconds = _seconds_per_image(row)
        if seconds is not None and "floor" not in name and "again" not in name:
            rows.append((name.split(), seconds))

    def first(*words: str, exclude: tuple[str, ...] = ()) -> float | None:
        for name, seconds in rows:
            text = " ".join(name)
            if all(w in text for w in words) and not any(x in text for x in exclude):
                return seconds
        return None

    def slowest_gradient(library: str) -> float | None:
        # a gradient method's row: the library, then the method's name as its last word
        names = {n for m in GRADIENT_METHODS for n in (m, m.replace("pp", "plusplus"))}
        times = [s for name, s in rows if name[0] == library and name[-1] in names]
        return max(times, default=None)

    plain = first("plain forward")
    if not plain:
        return {}
    found = {
        "camlib gradient": slowest_gradient("camlib"),
        "pgc gradient": slowest_gradient("pgc"),
        "camlib eigencam": first("camlib", "eigencam"),
        "camlib ablationcam": first("camlib", "ablationcam", exclude=("tail",)),
        "camlib ablationcam tail": first("camlib", "ablationcam", "tail"),
        "camlib scorecam": first("camlib", "scorecam"),
        "pgc ablationcam": first("pgc", "ablation"),
        "pgc scorecam": first("pgc", "scorecam"),
        "torchcam scorecam": first("torchcam", "scorecam"),
    }
    return {
        key: seconds / plain for key, seconds in found.items() if seconds is not None
    }


def about(ratio: float | None) -> str:
    """A time ratio at the resolution one benchmark run supports: ``about 1×`` below 1.5
    (a forward and a backward pass cannot take less than a forward pass: lower values
    are noise), else rounded to one significant figure; ``not run`` for None."""
    if ratio is None:
        return "not run"
    if ratio < 1.5:
        return "about 1×"
    unit = 10 ** math.floor(math.log10(ratio))
    return f"about {round(ratio / unit) * unit:.0f}×"


def speed_markdown(ratios: dict[str, float]) -> str:
    """Chapter 6's cost table: each kind of method, its work per image, and its time per
    image over a plain forward pass for camlib and pytorch-grad-cam (rows the run lacks
    are left out)."""
    lines = [
        "| method | work per image | camlib: time ÷ forward pass "
        "| pytorch-grad-cam: time ÷ forward pass |",
        "|---|---|---:|---:|",
    ]
    for label, work, ours, peer in SPEED_ROWS:
        if ours in ratios:
            theirs = about(ratios[peer]) if peer in ratios else "—"
            lines.append(f"| {label} | {work} | {about(ratios[ours])} | {theirs} |")
    return "\n".join(lines)


# --- methods whose maps coincide share a row ------------------------------------------


def _numbers(row) -> list[float]:
    if isinstance(row, Tensor):
        return row.detach().double().flatten().tolist()
    if isinstance(row, dict):
        return [x for value in row.values() for x in _numbers(value)]
    if isinstance(row, (list, tuple)):
        return [x for value in row for x in _numbers(value)]
    return [float(row)]


def _same(a, b, tol: float) -> bool:
    xs, ys = _numbers(a), _numbers(b)
    return len(xs) == len(ys) and all(
        (math.isnan(x) and math.isnan(y))
        or abs(x - y) <= tol * max(1.0, abs(x), abs(y))
        for x, y in zip(xs, ys)
    )


def identical_groups(rows: dict, tol: float = 1e-3) -> list[list[str]]:
    """The keys of ``rows`` grouped where all their numbers agree to ``tol`` (absolute
    up to 1, relative above), in first-seen order: methods whose maps coincide share a
    group."""
    groups: list[list[str]] = []
    for key, row in rows.items():
        home = next(
            (group for group in groups if _same(rows[group[0]], row, tol)), None
        )
        if home is None:
            groups.append([key])
        else:
            home.append(key)
    return groups


def merge_identical(summary: dict, groups: Sequence[Sequence[str]]) -> dict:
    """``summary`` ({method: row}) with each group of ``groups`` (methods whose maps
    coincide, e.g. from :func:`identical_groups` of the maps) merged into one row, the
    first member's, keyed by the members' human names ("CAM, Grad-CAM"); other rows stay
    as they are. Ready for :func:`cambook.compare.markdown_table`."""
    home = {m: group for group in groups for m in group if m in summary}
    merged: dict = {}
    for method, row in summary.items():
        group = [m for m in home.get(method, [method]) if m in summary]
        label = ", ".join(NAMES.get(m, m) for m in group)
        merged.setdefault(label, summary[group[0]])
    return merged


def verdict_table(
    values: dict,
    line: float,
    scope: str,
    notes: dict | None = None,
    groups: Sequence[Sequence[str]] | None = None,
) -> tuple[str, dict]:
    """The sanity checks' verdicts as Markdown. ``values`` is ``{method: {check:
    [Spearman of each seed]}}``; a check passes in a seed when its value is below
    ``line``. Methods with the ``groups`` (default: methods whose values agree to 1e-3)
    share a row; ``scope`` fills the last column, with ``notes[method]`` appended.
    Returns the table and ``{method: {check: number of seeds passed}}``."""
    checks = list(next(iter(values.values())))
    rows = [
        "| method | " + " | ".join(checks) + " | scope |",
        "|---" + "|:---" * (len(checks) + 1) + "|",
    ]
    passes = {
        m: {check: sum(v < line for v in seeds) for check, seeds in row.items()}
        for m, row in values.items()
    }
    groups = identical_groups(values) if groups is None else groups
    for group in [[m for m in g if m in values] for g in groups]:
        if not group:
            continue
        cells = []
        for check, seeds in values[group[0]].items():
            n = passes[group[0]][check]
            verdict = (
                "passes"
                if n == len(seeds)
                else "**fails**"
                if n == 0
                else f"passes in {n} of {len(seeds)}"
            )
            cells.append(f"{verdict} (" + ", ".join(f"{v:.2f}" for v in seeds) + ")")
        where = scope + "".join(
            f"; {(notes or {})[m]}" for m in group if m in (notes or {})
        )
        label = ", ".join(NAMES.get(m, m) for m in group)
        rows.append(f"| {label} | " + " | ".join(cells) + f" | {where} |")
    return "\n".join(rows), passes
