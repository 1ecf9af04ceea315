"""The interactive explorer: photo, layer, class, method, opacity and the Zhou box.

:class:`ExplorerState` does the computing and caching (no widgets, easy to test);
:class:`Explorer` wires ipywidgets controls to it. One forward pass per photo records
every layer; after that, changing layer, class or opacity never runs the network again
for CAM, and Grad-CAM needs only one backward pass per new class.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from camlib.explain import Capture, Explainer, find_linear_head
from camlib.methods import METHODS, get_method
from camlib.postprocess import colorize, to_image_maps, zhou_boxes

from .compare import NAMES
from .figures import CMAP

CONTROL_WIDTH = 300  # px: every control, so a long caption cannot squeeze them
ROLES = (
    "photo",
    "layer",
    "top-class",
    "any-class",
    "method",
    "opacity",
    "box",
    "box-ratio",
)
# Score-CAM at `head` (1280 channels) in the live explorer in JupyterLab, measured on a
# 2-core CPU by benchmarks/explorer_latency.py (results/explorer-latency.json, checked
# by
# tests/book/test_widgets.py)
SCORECAM_HEAD_COST = "about half a minute on a 2-core laptop"
HELP = (
    "CAM and the gradient methods redraw at once. Score-CAM runs the network again "
    "once per channel of the layer: at <code>head</code>, 1280 channels, that takes "
    f"{SCORECAM_HEAD_COST}. Ablation-CAM reruns the layers after the chosen one once "
    "per channel; at <code>head</code> it needs no rerun. Meanwhile the controls wait."
)


def method_name(method: str) -> str:
    """The name a reader knows a method by: ``"gradcampp"`` is ``"Grad-CAM++"``."""
    return NAMES.get(method, method)


def computing_message(method: str, class_name: str, layer: str, channels: int) -> str:
    what = (
        "masked copies of the photo"
        if get_method(method).needs_forward
        else ("ablated channels through the layers after it")
    )
    at_head = method == "scorecam" and layer == "head"
    cost = f" ({SCORECAM_HEAD_COST})" if at_head else ""
    return (
        f"<b>Computing {method_name(method)}&hellip;</b> for <b>{class_name}</b> "
        f"at layer <code>{layer}</code>: {channels} {what}{cost}. "
        "The controls wait until it ends."
    )


def wrapped(html: str, role: str) -> str:
    """Caption HTML that wraps within its box instead of widening it."""
    return (
        f'<div class="{role}" style="white-space:normal;overflow-wrap:anywhere;'
        f'line-height:1.35;font-size:var(--jp-widgets-font-size)">{html}</div>'
    )


class ExplorerState:
    """Maps of one model over named photos, cached per photo, layer, class, method."""

    def __init__(
        self,
        model: nn.Module,
        photos: Mapping[str, tuple[Tensor, Tensor]],
        layers: Sequence[str],
        class_names: Sequence[str],
        topk: int = 5,
    ) -> None:
        if not photos:
            raise ValueError("photos: expected at least one (display, input) pair")
        self.photos = {
            name: (display.squeeze(0), inputs.reshape(1, *inputs.shape[-3:]))
            for name, (display, inputs) in photos.items()
        }
        self.class_names = list(class_names)
        self.layers = list(layers)
        self.topk = topk
        # Grad-CAM's hooks record every layer; the graph from the first one up is kept.
        self._explainer = Explainer(model, method="gradcam", layers=self.layers)
        self._captures: dict[str, Capture] = {}
        self._class_rows: dict[int, Tensor] = {}
        self._maps: dict[tuple[str, str, int, str], Tensor] = {}
        self._feeds_head: dict[str, bool] = {}
        self.forward_passes = 0

    def capture(self, photo: str) -> Capture:
        if photo not in self._captures:
            inputs = self.photos[photo][1]
            capture = self._explainer.capture(inputs, track_gradients=True)
            self._captures = {photo: capture}
            self._maps = {}
            self.forward_passes += 1
        return self._captures[photo]

    def top_classes(self, photo: str) -> list[tuple[int, float]]:
        probabilities = self.capture(photo).logits.detach().softmax(dim=1)[0]
        top = probabilities.topk(self.topk)
        return list(zip(top.indices.tolist(), top.values.tolist()))

    def probability(self, photo: str, class_index: int) -> float:
        return float(self.capture(photo).logits.detach().softmax(dim=1)[0, class_index])

    def feeds_linear_head(self, photo: str, layer: str) -> bool:
        """Whether ``layer`` feeds the GAP + linear head (CAM applies; Ablation-CAM
        there is in closed form, with no rerun)."""
        if layer not in self._feeds_head:
            capture = self.capture(photo)
            try:
                find_linear_head(
                    self._explainer.model,
                    layer,
                    capture.activations[layer].detach(),
                    capture.logits.detach(),
                )
                self._feeds_head[layer] = True
            except ValueError:
                self._feeds_head[layer] = False
        return self._feeds_head[layer]

    def reruns_network(self, photo: str, layer: str, method: str) -> bool:
        """Whether this map runs the network again (Score-CAM; Ablation-CAM except at
        the layer that feeds the head): seconds, where others take milliseconds."""
        found = get_method(method)
        return found.needs_forward or (
            found.needs_tail and not self.feeds_linear_head(photo, layer)
        )

    def has_map(self, photo: str, layer: str, class_index: int, method: str) -> bool:
        """Whether :meth:`map` would answer from the cache."""
        key = (photo, layer, class_index, method)
        return photo in self._captures and key in self._maps

    def map(
        self,
        photo: str,
        layer: str,
        class_index: int,
        method: str,
        progress: bool = False,
    ) -> Tensor:
        """The image-sized map [H, W] in [0, 1]; ValueError where the method does not
        apply. ``progress``: a progress bar while a method reruns the network."""
        key = (photo, layer, class_index, method)
        if key not in self._maps:
            capture = self.capture(photo)
            device = capture.logits.device
            rows = self._class_rows.setdefault(
                class_index, torch.tensor([[class_index]], device=device)
            )
            self._explainer.progress = progress
            try:
                raw = self._explainer.raw_maps(capture, layer, rows, get_method(method))
            finally:
                self._explainer.progress = False
            size = tuple(self.photos[photo][0].shape[-2:])
            self._maps[key] = to_image_maps(raw, size)[0, 0]
        return self._maps[key]

    def render(
        self,
        photo: str,
        layer: str,
        class_index: int,
        method: str,
        alpha: float = 0.5,
        box_ratio: float | None = None,
        progress: bool = False,
    ) -> Tensor:
        """RGB uint8 [H, W, 3]: the map over the photo, with the Zhou box if
        ``box_ratio`` is set."""
        display = self.photos[photo][0]
        heat = self.map(photo, layer, class_index, method, progress)
        blended = (1 - alpha) * display + alpha * colorize(heat, CMAP)
        if box_ratio is not None:
            draw_box(blended, zhou_boxes(heat, box_ratio))
        return (blended.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0)

    def feature_size(self, photo: str, layer: str) -> tuple[int, int]:
        return tuple(self.capture(photo).activations[layer].shape[-2:])

    def channels(self, photo: str, layer: str) -> int:
        return int(self.capture(photo).activations[layer].shape[1])


def draw_box(image: Tensor, box: Tensor, width: int = 2) -> None:
    """Paint a white rectangle (x0, y0, x1, y1; ends exclusive) into ``image``
    [3, H, W] in place."""
    x0, y0, x1, y1 = box.tolist()
    for top, bottom, left, right in (
        (y0, y0 + width, x0, x1),
        (y1 - width, y1, x0, x1),
        (y0, y1, x0, x0 + width),
        (y0, y1, x1 - width, x1),
    ):
        image[:, max(top, 0) : max(bottom, 0), max(left, 0) : max(right, 0)] = 1.0


def png_bytes(rgb: Tensor) -> bytes:
    """Encode an RGB uint8 [H, W, 3] tensor as PNG (display only)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb.cpu().numpy()).save(buffer, format="PNG")
    return buffer.getvalue()


def colorbar_png(width: int = 256, height: int = 12) -> bytes:
    ramp = torch.linspace(0, 1, width).expand(height, width)
    pixels = (colorize(ramp, CMAP) * 255).round().to(torch.uint8).permute(1, 2, 0)
    return png_bytes(pixels)


class Explorer:
    """ipywidgets explorer: ``Explorer(model, photos, layers, class_names).widget``.

    ``photos`` maps a name to ``(display [3, H, W] in [0, 1], model input [3, H, W])``.
    The "any class" box acts when a name is submitted (Enter), and is cleared when the
    photo or the top class changes. While a method that reruns the network computes, the
    caption says so and the controls are disabled (the method's tqdm bar, if the front
    end renders it, goes to ``progress`` below the help text).
    """

    def __init__(
        self,
        model: nn.Module,
        photos: Mapping[str, tuple[Tensor, Tensor]],
        layers: Sequence[str],
        class_names: Sequence[str],
        topk: int = 5,
        initial_layer: str | None = None,
        display_width: int = 288,
    ) -> None:
        import ipywidgets as w

        self.state = ExplorerState(model, photos, layers, class_names, topk)
        layout = w.Layout(width=f"{CONTROL_WIDTH}px")
        style = {"description_width": "64px"}
        self.photo = w.Dropdown(
            options=list(self.state.photos),
            description="photo",
            layout=layout,
            style=style,
        )
        self.layer = w.Dropdown(
            options=self.state.layers,
            value=initial_layer or self.state.layers[-1],
            description="layer",
            layout=layout,
            style=style,
        )
        self.top_class = w.Dropdown(description="top class", layout=layout, style=style)
        # acts on Enter (or leaving the box), not on every keystroke
        self.any_class = w.Combobox(
            options=self.state.class_names,
            ensure_option=True,
            continuous_update=False,
            placeholder="type a class, Enter",
            description="any class",
            layout=layout,
            style=style,
        )
        # every registered method, in registration order
        self.method = w.Dropdown(
            options=[(method_name(m), m) for m in METHODS],
            value="cam",
            description="method",
            layout=layout,
            style=style,
        )
        self.opacity = w.FloatSlider(
            value=0.5,
            min=0.0,
            max=1.0,
            step=0.05,
            description="opacity",
            layout=layout,
            style=style,
        )
        self.box = w.Checkbox(
            value=False,
            description="Zhou box at",
            indent=False,
            layout=w.Layout(width="100px"),
        )
        self.box_ratio = w.FloatSlider(
            value=0.2,
            min=0.05,
            max=0.95,
            step=0.05,
            layout=w.Layout(width=f"{CONTROL_WIDTH - 105}px"),
        )
        self.help = w.HTML(
            value=wrapped(HELP, "cam-help"), layout=w.Layout(width=f"{CONTROL_WIDTH}px")
        )
        self.progress = w.Output(layout=w.Layout(width=f"{CONTROL_WIDTH}px"))
        self.image = w.Image(format="png", width=display_width)
        self.colorbar = w.Image(
            value=colorbar_png(), format="png", width=display_width - 40, height=12
        )
        self.caption = w.HTML(
            layout=w.Layout(width=f"{display_width}px", min_height="3.2em")
        )
        self.controls = (
            self.photo,
            self.layer,
            self.top_class,
            self.any_class,
            self.method,
            self.opacity,
            self.box,
            self.box_ratio,
        )
        for control, role in zip(self.controls, ROLES):
            control.add_class(f"cam-{role}")
        for part, role in (
            (self.image, "picture"),
            (self.caption, "caption"),
            (self.help, "help"),
            (self.progress, "progress"),
        ):
            part.add_class(f"cam-{role}")
        self.class_index = 0
        self._hold = 0  # > 0 while the explorer sets its own controls
        self._refresh_classes()
        self.photo.observe(self._on_photo, names="value")
        self.top_class.observe(self._on_top_class, names="value")
        self.any_class.observe(self._on_any_class, names="value")
        for control in self.controls[4:] + (self.layer,):
            control.observe(self._on_view, names="value")
        fixed = w.Layout(flex="0 0 auto")
        column = w.VBox(
            [
                *self.controls[:6],
                w.HBox([self.box, self.box_ratio]),
                self.help,
                self.progress,
            ],
            layout=fixed,
        )
        scale = w.HBox([w.Label("0"), self.colorbar, w.Label("1")])
        view = w.VBox(
            [self.caption, self.image, scale],
            layout=w.Layout(flex="0 0 auto", width=f"{display_width + 16}px"),
        )
        self.widget = w.HBox([column, view], layout=w.Layout(flex_flow="row wrap"))
        self.widget.add_class("cam-explorer")
        self.update()

    @contextmanager
    def _holding(self) -> Iterator[None]:
        """Set controls without their observers redrawing (the caller redraws once)."""
        self._hold += 1
        try:
            yield
        finally:
            self._hold -= 1

    def _refresh_classes(self) -> None:
        top = self.state.top_classes(self.photo.value)
        with self._holding():
            self.top_class.options = [
                (f"{self.state.class_names[i]} ({p:.2f})", i) for i, p in top
            ]
            self.top_class.value = top[0][0]
        self.class_index = top[0][0]

    def _on_photo(self, _change: object) -> None:
        if self._hold:
            return
        with self._holding():
            self.any_class.value = ""  # a name typed for the last photo is stale
        self._refresh_classes()
        self.update()

    def _on_top_class(self, change: Mapping) -> None:
        if self._hold or change["new"] is None:
            return
        self.class_index = change["new"]
        with self._holding():
            self.any_class.value = ""
        self.update()

    def _on_any_class(self, change: Mapping) -> None:
        if self._hold or change["new"] not in self.state.class_names:
            return
        self.class_index = self.state.class_names.index(change["new"])
        top_indices = [value for _label, value in self.top_class.options]
        with self._holding():
            shown = self.class_index in top_indices
            self.top_class.value = self.class_index if shown else None
        self.update()

    def _on_view(self, _change: object) -> None:
        if not self._hold:
            self.update()

    def _busy(self, message: str | None) -> None:
        """Disable the controls and say what computes, or (``None``) enable them."""
        for control in self.controls:
            control.disabled = message is not None
        if message is None:
            self.widget.remove_class("cam-busy")
        else:
            self.widget.add_class("cam-busy")
            self.caption.value = wrapped(message, "cam-computing")

    def update(self) -> None:
        photo, layer, method = self.photo.value, self.layer.value, self.method.value
        name = self.state.class_names[self.class_index]
        probability = self.state.probability(photo, self.class_index)
        h, w = self.state.feature_size(photo, layer)
        box = self.box_ratio.value if self.box.value else None
        slow = self.state.reruns_network(
            photo, layer, method
        ) and not self.state.has_map(photo, layer, self.class_index, method)
        try:
            if slow:
                self._busy(
                    computing_message(
                        method, name, layer, self.state.channels(photo, layer)
                    )
                )
                with self.progress:
                    rgb = self.state.render(
                        photo,
                        layer,
                        self.class_index,
                        method,
                        self.opacity.value,
                        box,
                        progress=True,
                    )
            else:
                rgb = self.state.render(
                    photo, layer, self.class_index, method, self.opacity.value, box
                )
        except ValueError:
            self.caption.value = wrapped(
                f"<b>{method_name(method)}</b> is defined only for the layer that "
                "feeds the global pooling; choose the last layer or Grad-CAM for "
                f"<code>{layer}</code>.",
                "cam-note",
            )
            display = self.state.photos[photo][0]
            pixels = (display * 255).round().to(torch.uint8).permute(1, 2, 0)
            self.image.value = png_bytes(pixels)
            return
        finally:
            if slow:
                self.progress.clear_output()
                self._busy(None)
        self.caption.value = wrapped(
            f"<b>{name}</b> (p={probability:.2f}) &middot; {method_name(method)} "
            f"&middot; layer <code>{layer}</code> ({h}&times;{w} cells)",
            "cam-shown",
        )
        self.image.value = png_bytes(rgb)


def layer_class_grid(
    state: ExplorerState,
    photo: str,
    layers: Sequence[str],
    method: str = "gradcam",
    topk: int = 3,
    alpha: float = 0.5,
):
    """The explorer's content as a figure: rows are layers, columns the top classes."""
    from .figures import plot_grid

    top = state.top_classes(photo)[:topk]
    maps = torch.stack(
        [
            torch.stack([state.map(photo, layer, c, method) for c, _ in top])
            for layer in layers
        ]
    )
    sizes = [state.feature_size(photo, layer) for layer in layers]
    row_titles = [f"{layer} {h}x{w}" for layer, (h, w) in zip(layers, sizes)]
    col_titles = [f"{state.class_names[c]} (p={p:.2f})" for c, p in top]
    return plot_grid(
        state.photos[photo][0],
        maps,
        row_titles,
        col_titles,
        f"{method_name(method)} of '{photo}' across depth",
        alpha,
    )
