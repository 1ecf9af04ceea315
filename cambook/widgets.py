"""The interactive explorer: photo, layer, class, method, opacity and the Zhou box.

:class:`ExplorerState` does the computing and caching (no widgets, easy to test);
:class:`Explorer` wires ipywidgets controls to it. One forward pass per photo records every
layer; after that, changing layer, class or opacity never runs the network again for CAM, and
Grad-CAM needs only one backward pass per new class.
"""
from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from camlib.explain import Capture, Explainer
from camlib.methods import METHODS, get_method
from camlib.postprocess import colorize, to_image_maps, zhou_boxes

from .figures import CMAP



class ExplorerState:
    """Maps of one model over named photos, cached per photo, layer, class and method."""

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
        self.photos = {name: (display.squeeze(0), inputs.reshape(1, *inputs.shape[-3:]))
                       for name, (display, inputs) in photos.items()}
        self.class_names = list(class_names)
        self.layers = list(layers)
        self.topk = topk
        # Grad-CAM's hooks record every layer; the graph from the first one up is kept.
        self._explainer = Explainer(model, method="gradcam", layers=self.layers)
        self._captures: dict[str, Capture] = {}
        self._class_rows: dict[int, Tensor] = {}
        self._maps: dict[tuple[str, str, int, str], Tensor] = {}
        self.forward_passes = 0

    def capture(self, photo: str) -> Capture:
        if photo not in self._captures:
            self._captures = {photo: self._explainer.capture(self.photos[photo][1], track_gradients=True)}
            self._maps = {}
            self.forward_passes += 1
        return self._captures[photo]

    def top_classes(self, photo: str) -> list[tuple[int, float]]:
        probabilities = self.capture(photo).logits.detach().softmax(dim=1)[0]
        top = probabilities.topk(self.topk)
        return list(zip(top.indices.tolist(), top.values.tolist()))

    def probability(self, photo: str, class_index: int) -> float:
        return float(self.capture(photo).logits.detach().softmax(dim=1)[0, class_index])

    def map(self, photo: str, layer: str, class_index: int, method: str) -> Tensor:
        """The image-sized map [H, W] in [0, 1]; raises ValueError where the method does not apply."""
        key = (photo, layer, class_index, method)
        if key not in self._maps:
            capture = self.capture(photo)
            rows = self._class_rows.setdefault(class_index, torch.tensor([[class_index]], device=capture.logits.device))
            raw = self._explainer.raw_maps(capture, layer, rows, get_method(method))
            self._maps[key] = to_image_maps(raw, tuple(self.photos[photo][0].shape[-2:]))[0, 0]
        return self._maps[key]

    def render(self, photo: str, layer: str, class_index: int, method: str,
               alpha: float = 0.5, box_ratio: float | None = None) -> Tensor:
        """RGB uint8 [H, W, 3]: the map over the photo, with the Zhou box if ``box_ratio`` is set."""
        display = self.photos[photo][0]
        heat = self.map(photo, layer, class_index, method)
        blended = (1 - alpha) * display + alpha * colorize(heat, CMAP)
        if box_ratio is not None:
            draw_box(blended, zhou_boxes(heat, box_ratio))
        return (blended.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0)

    def feature_size(self, photo: str, layer: str) -> tuple[int, int]:
        return tuple(self.capture(photo).activations[layer].shape[-2:])


def draw_box(image: Tensor, box: Tensor, width: int = 2) -> None:
    """Paint a white rectangle (x0, y0, x1, y1; ends exclusive) into ``image`` [3, H, W] in place."""
    x0, y0, x1, y1 = box.tolist()
    for top, bottom, left, right in (
        (y0, y0 + width, x0, x1), (y1 - width, y1, x0, x1), (y0, y1, x0, x0 + width), (y0, y1, x1 - width, x1),
    ):
        image[:, max(top, 0):max(bottom, 0), max(left, 0):max(right, 0)] = 1.0


def png_bytes(rgb: Tensor) -> bytes:
    """Encode an RGB uint8 [H, W, 3] tensor as PNG (display only)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb.cpu().numpy()).save(buffer, format="PNG")
    return buffer.getvalue()


def colorbar_png(width: int = 256, height: int = 12) -> bytes:
    ramp = torch.linspace(0, 1, width).expand(height, width)
    return png_bytes((colorize(ramp, CMAP) * 255).round().to(torch.uint8).permute(1, 2, 0))


class Explorer:
    """ipywidgets explorer. ``Explorer(model, photos, layers, class_names).widget`` to display.

    ``photos`` maps a name to ``(display [3, H, W] in [0, 1], model input [3, H, W])``.
    """

    def __init__(self, model: nn.Module, photos: Mapping[str, tuple[Tensor, Tensor]],
                 layers: Sequence[str], class_names: Sequence[str], topk: int = 5,
                 initial_layer: str | None = None, display_width: int = 288) -> None:
        import ipywidgets as w

        self.state = ExplorerState(model, photos, layers, class_names, topk)
        layout = w.Layout(width="300px")
        style = {"description_width": "64px"}
        self.photo = w.Dropdown(options=list(self.state.photos), description="photo", layout=layout, style=style)
        self.layer = w.Dropdown(options=self.state.layers, value=initial_layer or self.state.layers[-1],
                                description="layer", layout=layout, style=style)
        self.top_class = w.Dropdown(description="top class", layout=layout, style=style)
        self.any_class = w.Combobox(options=self.state.class_names, ensure_option=True, placeholder="type a class name",
                                    description="any class", layout=layout, style=style)
        # every registered method, in registration order; the perturbation ones rerun the network
        self.method = w.Dropdown(options=list(METHODS), value="cam", description="method",
                                 layout=layout, style=style)
        self.opacity = w.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.05, description="opacity",
                                     layout=layout, style=style)
        self.box = w.Checkbox(value=False, description="Zhou box at", indent=False, layout=w.Layout(width="100px"))
        self.box_ratio = w.FloatSlider(value=0.2, min=0.05, max=0.95, step=0.05, layout=w.Layout(width="195px"))
        self.image = w.Image(format="png", width=display_width)
        self.colorbar = w.Image(value=colorbar_png(), format="png", width=display_width - 40, height=12)
        self.caption = w.HTML()
        self.class_index = 0
        self._refresh_classes()
        self.photo.observe(self._on_photo, names="value")
        self.top_class.observe(self._on_top_class, names="value")
        self.any_class.observe(self._on_any_class, names="value")
        for control in (self.layer, self.method, self.opacity, self.box, self.box_ratio):
            control.observe(lambda _change: self.update(), names="value")
        controls = w.VBox([self.photo, self.layer, self.top_class, self.any_class, self.method, self.opacity,
                           w.HBox([self.box, self.box_ratio])])
        scale = w.HBox([w.Label("0"), self.colorbar, w.Label("1")])
        self.widget = w.HBox([controls, w.VBox([self.caption, self.image, scale])])
        self.update()

    def _refresh_classes(self) -> None:
        top = self.state.top_classes(self.photo.value)
        self.top_class.options = [(f"{self.state.class_names[i]} ({p:.2f})", i) for i, p in top]
        self.top_class.value = top[0][0]
        self.class_index = top[0][0]

    def _on_photo(self, _change: object) -> None:
        self._refresh_classes()
        self.update()

    def _on_top_class(self, change: Mapping) -> None:
        if change["new"] is not None:
            self.class_index = change["new"]
            self.update()

    def _on_any_class(self, change: Mapping) -> None:
        if change["new"] in self.state.class_names:
            self.class_index = self.state.class_names.index(change["new"])
            top_indices = [value for _label, value in self.top_class.options]
            self.top_class.value = self.class_index if self.class_index in top_indices else None
            self.update()

    def update(self) -> None:
        photo, layer, method = self.photo.value, self.layer.value, self.method.value
        name = self.state.class_names[self.class_index]
        probability = self.state.probability(photo, self.class_index)
        h, w = self.state.feature_size(photo, layer)
        try:
            rgb = self.state.render(photo, layer, self.class_index, method, self.opacity.value,
                                    self.box_ratio.value if self.box.value else None)
        except ValueError:
            self.caption.value = (f"<b>{method.upper()}</b> is defined only for the layer that feeds the global "
                                  f"pooling; choose the last layer or Grad-CAM for <code>{layer}</code>.")
            display = self.state.photos[photo][0]
            self.image.value = png_bytes((display * 255).round().to(torch.uint8).permute(1, 2, 0))
            return
        self.caption.value = (f"<b>{name}</b> (p={probability:.2f}) &middot; {method.upper()} &middot; "
                              f"layer <code>{layer}</code> ({h}&times;{w} cells)")
        self.image.value = png_bytes(rgb)


def layer_class_grid(state: ExplorerState, photo: str, layers: Sequence[str], method: str = "gradcam",
                     topk: int = 3, alpha: float = 0.5):
    """The explorer's content as a static figure: rows are layers, columns the top classes."""
    from .figures import plot_grid

    top = state.top_classes(photo)[:topk]
    maps = torch.stack([torch.stack([state.map(photo, layer, c, method) for c, _ in top]) for layer in layers])
    row_titles = [f"{layer} {state.feature_size(photo, layer)[0]}x{state.feature_size(photo, layer)[1]}"
                  for layer in layers]
    col_titles = [f"{state.class_names[c]} (p={p:.2f})" for c, p in top]
    return plot_grid(state.photos[photo][0], maps, row_titles, col_titles,
                     f"{method.upper()} of '{photo}' across depth", alpha)
