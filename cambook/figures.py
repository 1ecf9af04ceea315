"""Figures for the book: photos with their maps, titled with class names and
probabilities."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor

from camlib.explain import Explanation

CMAP = "jet"  # one colour map across the book, so colours mean the same everywhere


def _image(tensor: Tensor):
    """[3, H, W] in [0, 1] -> an array matplotlib can show (display only)."""
    return tensor.detach().permute(1, 2, 0).cpu().numpy()


def show_map(
    ax,
    photo: Tensor,
    heat: Tensor,
    title: str,
    alpha: float = 0.5,
    box: Sequence[int] | None = None,
):
    """Draw ``heat`` ([H, W] in [0, 1]) over ``photo`` ([3, H, W]) on ``ax``; returns
    the heat image."""
    ax.imshow(_image(photo))
    shown = ax.imshow(
        heat.detach().cpu().numpy(), cmap=CMAP, vmin=0, vmax=1, alpha=alpha
    )
    if box is not None:
        x0, y0, x1, y1 = (int(v) for v in box)
        ax.add_patch(
            Rectangle(
                (x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, lw=2, ec="white"
            )
        )
    ax.set_title(title, fontsize=10)
    ax.axis("off")
    return shown


def add_colorbar(fig: Figure, axes, label: str = "normalised map") -> None:
    mappable = ScalarMappable(norm=Normalize(0, 1), cmap=CMAP)
    fig.colorbar(mappable, ax=axes, shrink=0.8, label=label)


def class_label(class_names: Sequence[str], index: int, probability: float) -> str:
    return f"{class_names[index]} (p={probability:.2f})"


def plot_top_classes(
    photos: Tensor,
    exp: Explanation,
    class_names: Sequence[str],
    photo_titles: Sequence[str] | None = None,
    alpha: float = 0.5,
    boxes: bool = False,
    title: str | None = None,
) -> Figure:
    """One row per photo: the photo, then the map of each of its T classes over it."""
    batch, k = exp.classes.shape
    fig, axes = plt.subplots(
        batch,
        k + 1,
        figsize=(2.6 * (k + 1) + 0.8, 2.6 * batch + 0.5),
        squeeze=False,
        layout="constrained",
    )
    all_boxes = exp.boxes() if boxes else None
    for b in range(batch):
        axes[b, 0].imshow(_image(photos[b]))
        axes[b, 0].set_title(photo_titles[b] if photo_titles else "photo", fontsize=10)
        axes[b, 0].axis("off")
        for j in range(k):
            label = class_label(
                class_names, int(exp.classes[b, j]), float(exp.probabilities[b, j])
            )
            box = all_boxes[b, j].tolist() if all_boxes is not None else None
            show_map(
                axes[b, j + 1],
                photos[b],
                exp.maps[b, j],
                f"{j + 1}. {label}",
                alpha,
                box,
            )
    add_colorbar(fig, axes.ravel().tolist())
    if title is None:
        title = (
            f"{method_name(exp.method)} of the top-{k} classes, layer '{exp.layers[0]}'"
        )
    fig.suptitle(title, fontsize=12)
    return fig


def plot_grid(
    photo: Tensor,
    maps: Tensor,
    row_titles: Sequence[str],
    col_titles: Sequence[str],
    title: str,
    alpha: float = 0.5,
) -> Figure:
    """A rows x cols grid of maps ``[R, C, H, W]`` over one photo."""
    rows, cols = maps.shape[:2]
    fig, axes = plt.subplots(
        rows,
        cols,
        figsize=(2.4 * cols + 0.8, 2.4 * rows + 0.5),
        squeeze=False,
        layout="constrained",
    )
    for r in range(rows):
        for c in range(cols):
            show_map(
                axes[r, c],
                photo,
                maps[r, c],
                f"{row_titles[r]}\n{col_titles[c]}",
                alpha,
            )
    add_colorbar(fig, axes.ravel().tolist())
    fig.suptitle(title, fontsize=12)
    return fig


def plot_maps(
    photo: Tensor,
    maps: Sequence[Tensor],
    titles: Sequence[str],
    title: str,
    signed: bool = False,
    alpha: float = 0.5,
    columns: int = 3,
    shared: bool = False,
) -> Figure:
    """Maps ``[H, W]`` side by side over one photo. ``signed`` maps keep their sign: a
    diverging colour map centred on zero (red: evidence for the class, blue: against),
    each map scaled by its largest absolute value, or with ``shared`` all by the largest
    absolute value of all the maps, so that equal colours mean equal values (the colour
    bar then shows raw values)."""
    top = max(float(heat.abs().max()) for heat in maps) or 1.0
    columns = min(columns, len(maps))
    rows = -(-len(maps) // columns)
    fig, axes = plt.subplots(
        rows,
        columns,
        figsize=(2.8 * columns + 0.8, 3.1 * rows + 0.3),
        squeeze=False,
        layout="constrained",
    )
    for ax in axes.ravel()[len(maps) :]:
        ax.axis("off")
    for ax, heat, label in zip(axes.ravel(), maps, titles):
        if signed:
            scale = top if shared else float(heat.abs().max()) or 1.0
            ax.imshow(_image(photo))
            ax.imshow(
                (heat / scale).detach().cpu().numpy(),
                cmap="RdBu_r",
                vmin=-1,
                vmax=1,
                alpha=alpha,
            )
            ax.set_title(label, fontsize=10)
            ax.axis("off")
        else:
            show_map(ax, photo, heat, label, alpha)
    if signed:
        limit, label = (top, "map value") if shared else (1, "map / max |map|")
        mappable = ScalarMappable(norm=Normalize(-limit, limit), cmap="RdBu_r")
        fig.colorbar(mappable, ax=axes.ravel().tolist(), shrink=0.8, label=label)
    else:
        add_colorbar(fig, axes.ravel().tolist())
    fig.suptitle(title, fontsize=12)
    return fig


def summary_table(
    summary: dict, section: str, metrics: Sequence[str], percent: bool = True
) -> str:
    """A Markdown table of mean +- std rows from :func:`cambook.enhance.summarise`
    output."""
    scale, unit = (100.0, "%") if percent else (1.0, "")
    lines = ["| | " + " | ".join(metrics) + " |", "|---" + "|---:" * len(metrics) + "|"]
    for row, values in summary.items():
        if not row.startswith(section + ": "):
            continue
        cells = []
        for metric in metrics:
            stats = values.get(metric)
            if stats is None or stats["mean"] != stats["mean"]:  # NaN: not applicable
                cells.append("-")
            else:
                cells.append(
                    f"{scale * stats['mean']:.1f}{unit} ± {scale * stats['std']:.1f}"
                )
        lines.append(f"| {row[len(section) + 2 :]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_accuracy_bars(
    summary: dict,
    metric: str = "fused",
    title: str = "",
    kinds: dict[str, tuple[str, str]] | None = None,
) -> Figure:
    """Horizontal bars of mean accuracy with one standard deviation as error bars.

    ``kinds`` maps a bar's name to (colour, legend label): the bars take their colour,
    and a legend lists each non-empty label once, with the dotted one-in-two line."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    rows = [
        (name[len("accuracy: ") :], stats[metric])
        for name, stats in summary.items()
        if name.startswith("accuracy: ")
        and stats[metric]["mean"] == stats[metric]["mean"]
    ]
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(rows) + 1.2), layout="constrained")
    names = [name for name, _ in rows][::-1]
    means = [100 * s["mean"] for _, s in rows][::-1]
    stds = [100 * s["std"] for _, s in rows][::-1]
    colours = [(kinds or {}).get(name, ("tab:blue", ""))[0] for name in names]
    ax.barh(names, means, xerr=stds, color=colours, alpha=0.8, capsize=3)
    for y, (mean, std) in enumerate(zip(means, stds)):
        ax.text(min(mean + std + 1, 101), y, f"{mean:.1f}", va="center", fontsize=9)
    ax.set_xlim(0, 108)
    ax.axvline(50, color="grey", ls=":", lw=1)
    ax.set_xlabel("test accuracy (%), mean and std over seeds")
    ax.set_title(title, fontsize=11)
    if kinds:
        handles = [Patch(color=c, label=label) for c, label in kinds.values() if label]
        handles.append(Line2D([], [], color="grey", ls=":", label="one in two"))
        fig.legend(
            handles=handles,
            loc="outside lower center",
            ncols=3,
            fontsize=9,
            frameon=False,
        )
    return fig


def plot_threshold_curve(runs: Sequence[dict], zhou_ratio: float = 0.2) -> Figure:
    """GT-known localisation and mean IoU against the threshold, mean over runs."""
    import numpy as np

    ratios = [point["ratio"] for point in runs[0]["threshold_curve"]]
    fig, ax = plt.subplots(figsize=(6.5, 3.6), layout="constrained")
    for key, label in [
        ("validation_gt_known", "GT-known loc., validation"),
        ("gt_known", "GT-known loc., test"),
        ("mean_iou", "mean IoU, test"),
    ]:
        values = (
            np.array([[point[key] for point in run["threshold_curve"]] for run in runs])
            * 100
        )
        ax.errorbar(
            ratios,
            values.mean(0),
            yerr=values.std(0, ddof=1),
            marker="o",
            ms=3,
            capsize=2,
            label=label,
        )
    ax.axvline(zhou_ratio, color="grey", ls=":", lw=1)
    ax.text(zhou_ratio + 0.01, 5, "Zhou et al.'s 0.2", fontsize=8, color="grey")
    ax.set_xlabel(r"threshold $\tau$ (fraction of the displayed map's maximum)")
    ax.set_ylabel("%")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title("Localisation depends on the threshold", fontsize=11)
    return fig


def show_window(
    ax, image: Tensor, window: Sequence[float], title: str, colour: str = "white"
) -> None:
    """An image with a rectangle (x0, y0, x1, y1 in pixels, ends exclusive)."""
    ax.imshow(_image(image), interpolation="nearest")
    x0, y0, x1, y1 = (float(v) for v in window)
    ax.add_patch(
        Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, lw=1.5, ec=colour)
    )
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def plot_family(
    images: Tensor,
    maps: dict,
    row_titles: Sequence[str],
    title: str,
    names: dict | None = None,
    masks: Tensor | None = None,
    alpha: float = 0.5,
) -> Figure:
    """One row per image, one column per method: ``maps`` is ``{method: [B, h, w]}`` in
    [0, 1] (upsampled to the images' size here); ``masks`` [B, H, W] draws each object's
    outline."""
    import torch.nn.functional as F

    batch, size = images.shape[0], tuple(images.shape[-2:])
    methods = list(maps)
    figsize = (1.9 * len(methods) + 0.9, 2.0 * batch + 0.6)
    fig, axes = plt.subplots(
        batch, len(methods), figsize=figsize, squeeze=False, layout="constrained"
    )
    for column, method in enumerate(methods):
        heat = maps[method].detach().float().cpu()
        if tuple(heat.shape[-2:]) != size:
            heat = F.interpolate(heat[:, None], size=size, mode="bilinear")[:, 0]
        for row in range(batch):
            label = (names or {}).get(method, method)
            show_map(
                axes[row, column],
                images[row],
                heat[row].clamp(0, 1),
                f"{label}\n{row_titles[row]}",
                alpha,
            )
            axes[row, column].title.set_fontsize(8)
            if masks is not None:
                outline = masks[row].float().cpu().numpy()
                axes[row, column].contour(
                    outline, levels=[0.5], colors="white", linewidths=0.8
                )
    add_colorbar(fig, axes.ravel().tolist())
    fig.suptitle(title, fontsize=12)
    return fig


def plot_sanity_steps(
    steps: dict,
    title: str,
    names: dict | None = None,
    groups: Sequence[Sequence[str]] | None = None,
    dodge: float = 0.05,
) -> Figure:
    """Mean Spearman correlation after each cascading step: ``steps`` is ``{method:
    [(layer, value), ...]}`` from the classifier down. Each group of ``groups``
    (default: methods whose curves agree to 1e-3) shares one line, labelled with all
    their names; the lines cycle through four dash styles and six markers, and each is
    shifted sideways by ``dodge`` steps from the next, so that lines that nearly
    overlap stay visible."""
    from .family import identical_groups

    fig, ax = plt.subplots(figsize=(7.5, 3.6), layout="constrained")
    curves = {method: [value for _, value in rows] for method, rows in steps.items()}
    styles = ["-", "--", ":", "-."]
    markers = "osD^v<"
    groups = identical_groups(curves) if groups is None else groups
    groups = [g for g in ([m for m in group if m in curves] for group in groups) if g]
    for i, group in enumerate(groups):
        label = ", ".join((names or {}).get(method, method) for method in group)
        shift = dodge * (i - (len(groups) - 1) / 2)
        ax.plot(
            [x + shift for x in range(len(curves[group[0]]))],
            curves[group[0]],
            marker=markers[i % len(markers)],
            label=label,
            linestyle=styles[i % len(styles)],
        )
    first = next(iter(steps.values()))
    ax.set_xticks(
        range(len(first)), [f"+ {layer}" for layer, _ in first], rotation=20, fontsize=8
    )
    ax.set_ylabel("Spearman with the trained model's map")
    ax.set_xlabel("layers re-initialised, cumulatively from the classifier down")
    ax.axhline(0, color="grey", lw=0.8)
    ax.legend(fontsize=8, ncol=2)
    ax.set_title(title)
    return fig


# --- Human names of the methods, for titles -------------------------------------------

METHOD_NAMES = {
    "cam": "CAM",
    "gradcam": "Grad-CAM",
    "gradcampp": "Grad-CAM++",
    "layercam": "LayerCAM",
    "scorecam": "Score-CAM",
    "ablationcam": "Ablation-CAM",
    "eigencam": "Eigen-CAM",
    "xgradcam": "XGrad-CAM",
    "hirescam": "HiResCAM",
}


def method_name(method: str) -> str:
    """The name a reader knows (``"gradcampp"`` -> ``"Grad-CAM++"``); unknown keys
    unchanged."""
    return METHOD_NAMES.get(method, method)


def plot_deletion(
    steps: Sequence[Tensor],
    shown: Sequence[float],
    curves: dict,
    title: str,
) -> Figure:
    """A deletion run for one image. Top: the image after deleting the ``shown``
    fractions of its pixels (``steps``, [3, H, W] each, already in [0, 1]); bottom: the
    curves of ``curves`` (``{label: (fractions [S + 1], P_c [S + 1])}``), each with its
    area under the curve."""
    fig = plt.figure(figsize=(8.5, 5.2), layout="constrained")
    grid = fig.add_gridspec(2, len(steps), height_ratios=[1, 1.6])
    for i, (image, fraction) in enumerate(zip(steps, shown)):
        ax = fig.add_subplot(grid[0, i])
        ax.imshow(_image(image.clamp(0, 1)), interpolation="nearest")
        ax.set_title(f"{fraction:.0%} deleted", fontsize=9)
        ax.axis("off")
    ax = fig.add_subplot(grid[1, :])
    for label, (fractions, scores) in curves.items():
        x, y = fractions.cpu().numpy(), scores.cpu().numpy()
        area = float(((y[1:] + y[:-1]) / 2 * (x[1:] - x[:-1])).sum())
        line = ax.plot(x, y, marker=".", label=f"{label} (AUC {area:.2f})")[0]
        ax.fill_between(x, y, alpha=0.12, color=line.get_color())
    ax.set_xlabel("fraction of pixels deleted or inserted, highest map value first")
    ax.set_ylabel("class probability $P_c$")
    ax.set_ylim(0, 1.02)
    ax.set_xlim(0, 1)
    ax.legend(fontsize=9)
    fig.suptitle(title, fontsize=11)
    return fig
