"""Diagrams for the book, drawn in code: the schematic of CAM (feature maps -> GAP ->
linear layer, and the weighted sum that gives the map) and the display steps of one
map."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor

from .figures import CMAP, _image, add_colorbar, show_map


# --- A schematic of CAM, drawn in code ------------------------------------------------


def _grid(
    ax, x: float, y: float, size: float, values, cmap: str = "viridis", edge: str = "k"
):
    """A small square image of ``values`` ([n, n] array) with its lower-left corner at
    (x, y)."""
    ax.imshow(
        values,
        cmap=cmap,
        extent=(x, x + size, y, y + size),
        origin="upper",
        interpolation="nearest",
        zorder=2,
    )
    ax.add_patch(Rectangle((x, y), size, size, fill=False, ec=edge, lw=0.8, zorder=3))


def _column(
    ax,
    x: float,
    y: float,
    cells: int,
    height: float,
    values,
    cmap: str,
    highlight: int | None = None,
) -> None:
    """A column vector of ``cells`` boxes from y up to y + height, coloured by
    ``values``."""
    import numpy as np

    step = height / cells
    colours = plt.get_cmap(cmap)(np.asarray(values))
    for i in range(cells):
        top = y + height - (i + 1) * step
        ax.add_patch(
            Rectangle((x, top), 1.6, step, fc=colours[i], ec="k", lw=0.5, zorder=2)
        )
    if highlight is not None:
        top = y + height - (highlight + 1) * step
        ax.add_patch(
            Rectangle(
                (x - 0.3, top - 0.1),
                2.2,
                step + 0.2,
                fill=False,
                ec="crimson",
                lw=1.6,
                zorder=4,
            )
        )


def _arrow(
    ax,
    start,
    end,
    label: str = "",
    offset=(0.0, 1.2),
    colour: str = "k",
    style: str = "-|>",
    fontsize: int = 9,
    dashed: bool = False,
) -> None:
    ax.annotate(
        "",
        xy=end,
        xytext=start,
        zorder=5,
        arrowprops=dict(
            arrowstyle=style,
            color=colour,
            lw=1.4,
            linestyle="--" if dashed else "-",
            shrinkA=2,
            shrinkB=2,
        ),
    )
    if label:
        middle = (
            (start[0] + end[0]) / 2 + offset[0],
            (start[1] + end[1]) / 2 + offset[1],
        )
        ax.text(
            *middle,
            label,
            ha="center",
            va="bottom",
            fontsize=fontsize,
            color=colour,
            zorder=6,
        )


def plot_cam_schematic(
    photo: Tensor | None = None,
    features: Tensor | None = None,
    heat: Tensor | None = None,
    shapes: bool = False,
    names: Sequence[str] = ("K", "h", "w", "N", "H", "W"),
    note: str = "",
) -> Figure:
    """CAM as a diagram: feature maps -> GAP -> linear layer -> logits -> softmax (top),
    and the same feature maps weighted by row c of the linear layer and summed into the
    map (bottom).

    ``photo`` ([3, H, W] in [0, 1]), ``features`` (a few feature maps [k, h, w]) and
    ``heat`` (the map [h, w] or [H, W]) draw real data where given; otherwise neutral
    patterns are drawn. ``shapes=True`` labels every tensor with its shape, for one
    image; ``names`` gives the symbols (or numbers) printed for K, h, w, N, H, W;
    ``note`` is printed under the identity on the dashed link (e.g. where it is proved).
    """
    import numpy as np

    K, h, w, N, H, W = names
    rng = np.random.default_rng(0)
    fig, ax = plt.subplots(figsize=(11, 4.6), layout="constrained")
    ax.set_xlim(0, 110)
    ax.set_ylim(-2, 44)
    ax.set_aspect("equal")
    ax.axis("off")
    small = 7 if features is None else int(features.shape[-1])
    if features is None:
        yy, xx = np.mgrid[0:small, 0:small]
        maps = [
            np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 6.0)
            + 0.15 * rng.random((small, small))
            for cy, cx in ((2, 2), (4, 5), (1, 5), (5, 1))
        ]
    else:
        maps = [f.detach().float().cpu().numpy() for f in features[:4]]
    # the photo and the network's body
    if photo is not None:
        ax.imshow(_image(photo), extent=(0, 12, 14, 26), zorder=2)
    else:
        ax.add_patch(Rectangle((0, 14), 12, 12, fc="0.85", ec="k", lw=0.8))
    ax.text(
        6,
        12.8,
        "image $X$" + (f"\n$3 \\times {H} \\times {W}$" if shapes else ""),
        ha="center",
        va="top",
        fontsize=9,
    )
    _arrow(ax, (12.5, 20), (19.5, 20), "conv.\nlayers", offset=(0, 0.8), fontsize=8)
    # the stack of feature maps
    for i, values in enumerate(reversed(maps)):
        shift = 1.6 * (len(maps) - 1 - i)
        _grid(ax, 20 + shift, 14 + shift, 9, values)
    ax.text(
        29.3,
        12.8,
        "feature maps\n$f_1, \\dots, f_K$"
        + (f"\n${K} \\times {h} \\times {w}$" if shapes else ""),
        ha="center",
        va="top",
        fontsize=9,
    )
    # top path: GAP, linear layer, logits, softmax
    pooled = rng.random(12)
    _arrow(ax, (34.5, 27), (45, 35), "GAP", offset=(-2.5, 0.5))
    _column(ax, 45.5, 29, 12, 12, pooled, "viridis")
    ax.text(
        46.3, 42, "$F_k$" + (f"  (${K}$)" if shapes else ""), ha="center", fontsize=9
    )
    _arrow(ax, (48, 35), (62, 35), "linear layer\n$w^c_k$, $b_c$", offset=(0, 0.6))
    ax.text(
        55,
        31.5,
        f"$W$: ${N} \\times {K}$" if shapes else "",
        ha="center",
        fontsize=8,
        va="top",
    )
    logits = rng.random(12)
    logits[3] = 1.0
    _column(ax, 62.5, 29, 12, 12, logits, "Greys", highlight=3)
    ax.text(
        63.3,
        42,
        "logits $S_c$" + (f" (${N}$)" if shapes else ""),
        ha="center",
        fontsize=9,
    )
    _arrow(ax, (65, 35), (76, 35), "softmax", offset=(0, 0.6))
    _column(
        ax,
        76.5,
        29,
        12,
        12,
        np.exp(4 * logits) / np.exp(4 * logits).max(),
        "Greys",
        highlight=3,
    )
    ax.text(77.3, 42, "probabilities $P_c$", ha="center", fontsize=9)
    # bottom path: weight by row c, sum over k
    _arrow(
        ax,
        (34.5, 15),
        (50, 6),
        "weight map $k$ by $w^c_k$,\nsum over $k$",
        offset=(-3.5, -8.8),
    )
    cam = (
        sum(np.asarray(rng.uniform(-0.3, 1.0)) * m for m in maps)
        if heat is None
        else None
    )
    if heat is not None:
        cam = heat.detach().float().cpu().numpy()
    _grid(ax, 50.5, 0, 9, cam, cmap=CMAP)
    ax.text(
        55,
        -1.2,
        "class activation map $M_c$" + (f" (${h} \\times {w}$)" if shapes else ""),
        ha="center",
        va="top",
        fontsize=9,
    )
    # the identity that ties the two paths together
    _arrow(
        ax, (58, 9.5), (62.8, 28.5), "", colour="crimson", dashed=True, style="<|-|>"
    )
    ax.text(
        61.5,
        19,
        "mean of $M_c$ + $b_c$ = $S_c$" + (f"\n({note})" if note else ""),
        color="crimson",
        fontsize=9,
        ha="left",
        va="center",
    )
    # row c of the linear layer feeds the weighted sum
    ax.annotate(
        "",
        xy=(42, 9),
        xytext=(55, 29.5),
        zorder=5,
        arrowprops=dict(
            arrowstyle="-|>",
            color="crimson",
            lw=1,
            linestyle=":",
            connectionstyle="arc3,rad=0.25",
        ),
    )
    ax.text(43, 21, "row $c$\nof $W$", color="crimson", fontsize=8, ha="center")
    # display: ReLU, upsample, scale, overlay
    _arrow(
        ax,
        (60, 4.5),
        (86, 4.5),
        "ReLU, upsample,\nscale to [0, 1]",
        offset=(0, 0.6),
        fontsize=8,
    )
    import torch
    import torch.nn.functional as F

    big = F.interpolate(
        torch.as_tensor(cam, dtype=torch.float32).clamp_min(0)[None, None],
        size=(64, 64),
        mode="bilinear",
        align_corners=False,
    )[0, 0].numpy()
    big = (big - big.min()) / ((big.max() - big.min()) or 1.0)
    if photo is not None:
        ax.imshow(_image(photo), extent=(86.5, 98.5, -1.5, 10.5), zorder=2)
        ax.imshow(big, cmap=CMAP, alpha=0.5, extent=(86.5, 98.5, -1.5, 10.5), zorder=3)
        ax.add_patch(
            Rectangle((86.5, -1.5), 12, 12, fill=False, ec="k", lw=0.8, zorder=4)
        )
    else:
        _grid(ax, 86.5, -1.5, 12, big, cmap=CMAP)
    ax.text(
        92.5,
        -2.2,
        "$\\tilde M_c$ over the image" + (f" (${H} \\times {W}$)" if shapes else ""),
        ha="center",
        va="top",
        fontsize=9,
    )
    return fig


def plot_display_steps(
    photo: Tensor, raw: Tensor, title: str, alpha: float = 0.5
) -> Figure:
    """The display pipeline of one raw map ``[h, w]``: signed, after ReLU, upsampled to
    the photo's size and scaled to [0, 1], and drawn over ``photo`` ([3, H, W])."""
    from camlib.postprocess import normalize, upsample

    relu = raw.detach().clamp_min(0)
    big = normalize(upsample(relu, tuple(photo.shape[-2:])))
    fig, axes = plt.subplots(1, 4, figsize=(12, 3.4), layout="constrained")
    scale = float(raw.abs().max()) or 1.0
    signed = axes[0].imshow(
        raw.detach().cpu().numpy(), cmap="RdBu_r", vmin=-scale, vmax=scale
    )
    fig.colorbar(signed, ax=axes[0], shrink=0.8)
    axes[0].set_title("1. raw map $M_c$ (signed)", fontsize=10)
    positive = axes[1].imshow(relu.cpu().numpy(), cmap=CMAP, vmin=0)
    fig.colorbar(positive, ax=axes[1], shrink=0.8)
    axes[1].set_title("2. ReLU: negatives set to 0", fontsize=10)
    axes[2].imshow(big.cpu().numpy(), cmap=CMAP, vmin=0, vmax=1)
    axes[2].set_title("3. upsampled, scaled to [0, 1]", fontsize=10)
    show_map(axes[3], photo, big, "4. over the image", alpha)
    add_colorbar(fig, axes[2:].tolist())
    for ax in axes[:3]:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=12)
    return fig
