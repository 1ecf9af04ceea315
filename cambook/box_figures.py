"""Figures whose boxes stay visible on the image border (Chapters 3 and 4): a box is
drawn inset by a few pixels with a dark outline, so a box along the edge of a map still
shows; and signed difference maps in a colour map centred on zero."""
from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor

from .figures import CMAP, _image, add_colorbar, class_label, show_map, show_window


def draw_box(ax, box: Sequence[float], image_size: tuple[int, int],
             colour: str = "white", width: float = 2.5) -> None:
    """Draw ``box`` (x0, y0, x1, y1 in pixels, ends exclusive) inset by a few pixels,
    with a dark outline, so that a box on the image border stays visible on any map."""
    from matplotlib import patheffects

    height, width_px = image_size
    inset = max(1.5, 0.012 * max(height, width_px))
    x0, y0, x1, y1 = (float(v) for v in box)
    x0, y0 = max(x0, inset) - 0.5, max(y0, inset) - 0.5
    x1, y1 = min(x1, width_px - inset) - 0.5, min(y1, height - inset) - 0.5
    patch = Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, lw=width, ec=colour)
    outline = patheffects.Stroke(linewidth=width + 2.5, foreground="black")
    patch.set_path_effects([outline, patheffects.Normal()])
    ax.add_patch(patch)


def plot_boxed_maps(photos: Sequence[Tensor], maps: Sequence[Tensor],
                    boxes: Sequence[Sequence[float]], titles: Sequence[str], title: str,
                    columns: int = 4, alpha: float = 0.5) -> Figure:
    """Maps ``[H, W]`` in [0, 1] over their photos ``[3, H, W]``, each with its box
    drawn so that it shows on the border too; one colour bar."""
    columns = min(columns, len(maps))
    rows = -(-len(maps) // columns)
    figsize = (2.7 * columns + 0.9, 2.9 * rows + 0.4)
    fig, axes = plt.subplots(rows, columns, figsize=figsize, squeeze=False,
                             layout="constrained")
    for ax in axes.ravel()[len(maps):]:
        ax.axis("off")
    for ax, photo, heat, box, label in zip(axes.ravel(), photos, maps, boxes, titles):
        show_map(ax, photo, heat, label, alpha)
        draw_box(ax, box, tuple(heat.shape[-2:]))
    add_colorbar(fig, axes.ravel().tolist())
    fig.suptitle(title, fontsize=12)
    return fig


def plot_map_to_box(photo: Tensor, raw: Tensor, scaled: Tensor, region: Tensor,
                       box: Sequence[float], class_name: str, tau: float) -> Figure:
    """The display pipeline of one map, left to right: the raw signed map ``[h, w]``,
    its ReLU, the upsampled and min-max scaled map over the photo, and the region above
    ``tau`` (the rest darkened) with its box."""
    fig, axes = plt.subplots(1, 4, figsize=(12.5, 3.6), layout="constrained")
    h, w = raw.shape
    limit = float(raw.abs().max()) or 1.0
    signed = axes[0].imshow(raw.cpu().numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit,
                            interpolation="nearest")
    axes[0].set_title(f"1. raw map $M_c$ ({h}x{w}),\nsigned", fontsize=10)
    fig.colorbar(signed, ax=axes[0], shrink=0.7, location="bottom", label="$M_c(i, j)$")
    positive = axes[1].imshow(raw.clamp_min(0).cpu().numpy(), cmap=CMAP, vmin=0,
                              interpolation="nearest")
    axes[1].set_title("2. ReLU: positive\nevidence only", fontsize=10)
    fig.colorbar(positive, ax=axes[1], shrink=0.7, location="bottom",
                 label="$\\max(M_c, 0)$")
    shown = show_map(axes[2], photo, scaled,
                     f"3. upsampled, min-max\nscaled: {class_name}")
    fig.colorbar(shown, ax=axes[2], shrink=0.7, location="bottom",
                 label="$\\tilde M_c$")
    axes[3].imshow(_image(photo))
    outside = (~region.bool()).float().cpu().numpy()
    axes[3].imshow(outside, cmap="Greys", vmin=0, vmax=1, alpha=0.6 * outside)
    draw_box(axes[3], box, tuple(scaled.shape[-2:]))
    axes[3].set_title(f"4. region $\\tilde M_c \\geq {tau:g}$ (bright)\nand Zhou's box",
                      fontsize=10)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig


def plot_signed_differences(photo: Tensor, differences: Sequence[Tensor],
                            titles: Sequence[str], title: str, label: str) -> Figure:
    """Signed difference maps ``[H, W]`` over a greyed photo ``[3, H, W]``: a diverging
    colour map centred on zero (red above, blue below, white at zero), symmetric limits
    shared by all panels, and one colour bar."""
    limit = max(float(d.abs().max()) for d in differences) or 1.0
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-limit, vmax=limit)
    fig, axes = plt.subplots(1, len(differences), figsize=(2.7 * len(differences) + 1.2,
                             3.3), squeeze=False, layout="constrained")
    grey = _image(photo).mean(-1)
    for ax, difference, name in zip(axes[0], differences, titles):
        ax.imshow(grey, cmap="gray", vmin=0, vmax=1)
        shown = ax.imshow(difference.cpu().numpy(), cmap="RdBu_r", norm=norm, alpha=0.8)
        ax.set_title(name, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(shown, ax=axes[0].tolist(), shrink=0.8, label=label)
    fig.suptitle(title, fontsize=12)
    return fig


def plot_look_then_zoom(scenes, pipeline, class_names: Sequence[str]) -> Figure:
    """Columns are scenes; rows: the scene with its true box (green) and the CAM window
    (white, drawn inside the border when it covers the whole scene), stage 1's map over
    the global view, and the crop stage 2 classifies. ``pipeline`` has the fields of
    :class:`cambook.enhance.TwoStage`."""
    import torch.nn.functional as F

    count = pipeline.crops.shape[0]
    fig, axes = plt.subplots(3, count, figsize=(2.5 * count + 0.9, 8.4), squeeze=False,
                             layout="constrained")
    images = scenes.float_images()
    size = tuple(images.shape[-2:])
    views = F.interpolate(pipeline.views, size=tuple(pipeline.maps.shape[-2:]),
                          mode="nearest")
    for i in range(count):
        show_window(axes[0, i], images[i], scenes.boxes[i].tolist(),
                    f"true: {class_names[scenes.labels[i]]}", "lime")
        draw_box(axes[0, i], pipeline.windows[i].tolist(), size, width=2.0)
        first = class_label(class_names, int(pipeline.first[i].argmax()),
                            float(pipeline.first[i].max()))
        show_map(axes[1, i], views[i], pipeline.maps[i], f"stage 1:\n{first}")
        second = class_label(class_names, int(pipeline.second[i].argmax()),
                             float(pipeline.second[i].max()))
        axes[2, i].imshow(_image(pipeline.crops[i]), interpolation="nearest")
        axes[2, i].set_title(f"stage 2:\n{second}", fontsize=9)
        axes[2, i].axis("off")
    add_colorbar(fig, axes[1].tolist())
    fig.suptitle("Top: scene, true box (green), CAM window (white). Middle: stage 1's"
                 " CAM over the global view. Bottom: the crop stage 2 sees.",
                 fontsize=10)
    return fig


def plot_photo_windows(photos: dict, zooms: dict, class_names: Sequence[str],
                       topk: int = 3) -> Figure:
    """Each photo with its CAM window (drawn inside the border) and top classes (top
    row), the window and its classes (bottom row); ``zooms`` from
    :func:`cambook.zoom.zoom_in`."""
    fig, axes = plt.subplots(2, len(photos), figsize=(3 * len(photos), 6.4),
                             squeeze=False, layout="constrained")
    for i, (name, photo) in enumerate(photos.items()):
        zoom = zooms[name]
        before = "\n".join(class_label(class_names, int(c), float(p))
                           for p, c in zip(*zoom.before.topk(topk)))
        after = "\n".join(class_label(class_names, int(c), float(p))
                          for p, c in zip(*zoom.after.topk(topk)))
        axes[0, i].imshow(_image(photo))
        draw_box(axes[0, i], zoom.window.tolist(), tuple(photo.shape[-2:]))
        axes[0, i].set_title(f"{name}, whole photo:\n{before}", fontsize=9)
        axes[0, i].axis("off")
        x0, y0, x1, y1 = (int(v) for v in zoom.window.round())
        axes[1, i].imshow(_image(photo[:, y0:y1, x0:x1]))
        axes[1, i].set_title(f"the window:\n{after}", fontsize=9)
        axes[1, i].axis("off")
    return fig
