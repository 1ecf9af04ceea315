"""The explorer without a kernel: precomputed maps that the browser switches between.

A static web page cannot run Python callbacks, so an ipywidgets
:class:`~cambook.widgets.Explorer` saved into HTML would show controls that change
nothing. :func:`static_explorer` computes, once, every view the page offers (each photo
x layer x top-``T`` class x method) and emits a small self-contained HTML/JavaScript
block: the photo, layer, class, method, opacity and Zhou-box controls switch between the
precomputed pictures in the browser. What needs a kernel (a class chosen by name among
all 1000) is shown disabled, with a one-line note.

:func:`explorer` picks the right one: the live ipywidgets explorer in a running
notebook, this static one when the book is built (``CAM_BOOK_STATIC=1``, set by
``tools/build-book.sh``).
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import json
import os
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from camlib.postprocess import colorize

from .figures import CMAP
from .widgets import Explorer, ExplorerState, colorbar_png, method_name

STATIC_ENV = "CAM_BOOK_STATIC"
BOX_RATIOS = tuple(round(0.05 * i, 2) for i in range(1, 20))  # the live slider's steps
_counter = itertools.count()


def jpeg_data_uri(rgb: Tensor, quality: int = 80) -> str:
    """RGB ``[3, H, W]`` in [0, 1] as a ``data:image/jpeg;base64,...`` URI."""
    from PIL import Image

    pixels = (
        (rgb.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    )
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode(
        "ascii"
    )


# The static page keeps the methods that cost one forward and a backward pass per class;
# the perturbation methods (Score-CAM: K masked forward passes) stay in the live
# explorer.
STATIC_METHODS = ("cam", "gradcam", "gradcampp", "layercam")


def precompute(
    state: ExplorerState,
    layers: Sequence[str] | None = None,
    methods: Sequence[str] = STATIC_METHODS,
    topk: int = 3,
    quality: int = 80,
) -> dict:
    """Every view of the static explorer, as JSON-ready data (images as JPEG data URIs).

    For each photo: its top-``topk`` classes with probabilities and, per layer and
    method, one colour map per class (``None`` where the method does not apply to the
    layer) and its Zhou boxes ``(x0, y0, x1, y1)`` for each ratio in :data:`BOX_RATIOS`.
    """
    layers = list(layers or state.layers)
    unknown = [layer for layer in layers if layer not in state.layers]
    if unknown:
        raise ValueError(f"layers: expected names among {state.layers}, got {unknown}")
    if not 1 <= topk <= state.topk:
        raise ValueError(f"topk: expected an integer in [1, {state.topk}], got {topk}")
    photos = {}
    for photo, (display, _inputs) in state.photos.items():
        top = state.top_classes(photo)[:topk]
        views = {
            layer: {
                "cells": list(state.feature_size(photo, layer)),
                **{
                    m: {"maps": [None] * len(top), "boxes": [None] * len(top)}
                    for m in methods
                },
            }
            for layer in layers
        }
        heats, slots = [], []
        # Class outermost: Grad-CAM's one backward pass per class serves every layer.
        for t, (class_index, _p) in enumerate(top):
            for layer in layers:
                for method in methods:
                    try:
                        heat = state.map(photo, layer, class_index, method)
                    except (
                        ValueError
                    ):  # e.g. CAM on a layer that does not feed the pooling
                        continue
                    views[layer][method]["maps"][t] = jpeg_data_uri(
                        colorize(heat, CMAP), quality
                    )
                    heats.append(heat)
                    slots.append((layer, method, t))
        boxes = box_table(torch.stack(heats)).tolist()  # [N, ratios, 4]
        for (layer, method, t), per_ratio in zip(slots, boxes):
            views[layer][method]["boxes"][t] = per_ratio
        photos[photo] = {
            "image": jpeg_data_uri(display, quality),
            "size": list(display.shape[-2:]),
            "classes": [[state.class_names[c], round(p, 4)] for c, p in top],
            "views": views,
        }
    return {
        "photos": photos,
        "layers": layers,
        "methods": list(methods),
        "names": {m: method_name(m) for m in methods},
        "ratios": list(BOX_RATIOS),
        "colorbar": "data:image/png;base64,"
        + base64.b64encode(colorbar_png()).decode("ascii"),
    }


def box_table(maps: Tensor) -> Tensor:
    """Zhou boxes ``[N, len(BOX_RATIOS), 4]`` of maps ``[N, H, W]`` for every ratio.

    The same boxes as :func:`camlib.zhou_boxes` (threshold at ``ratio`` of the max,
    8-connected components, the largest wins; a size tie goes to the component that ends
    first in raster order), computed with ``scipy.ndimage.label``, which is fast on one
    map at a time on the CPU: the table has a few hundred entries per photo.
    """
    from scipy import ndimage

    eight = np.ones((3, 3), dtype=bool)
    values = maps.detach().cpu().numpy()
    table = np.zeros((len(values), len(BOX_RATIOS), 4), dtype=np.int64)
    for n, heat in enumerate(values):
        for r, ratio in enumerate(BOX_RATIOS):
            labels, count = ndimage.label(
                heat >= np.float32(ratio) * heat.max(), structure=eight
            )
            sizes = np.bincount(labels.ravel(), minlength=count + 1)
            sizes[0] = 0
            biggest = np.flatnonzero(sizes == sizes.max())
            if len(biggest) > 1:  # tie: the component whose last pixel comes first
                flat = labels.ravel()
                last = [np.flatnonzero(flat == b).max() for b in biggest]
                biggest = biggest[np.argmin(last) :]
            ys, xs = np.nonzero(labels == biggest[0])
            table[n, r] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    return torch.from_numpy(table)


def image_bytes(data: Mapping) -> int:
    """Decoded size in bytes of every image the static explorer embeds."""
    uris = [data["colorbar"]]
    for photo in data["photos"].values():
        uris.append(photo["image"])
        for view in photo["views"].values():
            for method in data["methods"]:
                uris.extend(uri for uri in view[method]["maps"] if uri is not None)
    return sum(len(base64.b64decode(uri.split(",", 1)[1])) for uri in uris)


class StaticExplorer:
    """Displays as the self-contained HTML explorer (``_repr_html_``); ``data`` holds
    the views."""

    def __init__(
        self,
        state: ExplorerState,
        layers: Sequence[str] | None = None,
        methods: Sequence[str] = STATIC_METHODS,
        topk: int = 3,
        initial_layer: str | None = None,
        display_width: int = 288,
    ) -> None:
        self.data = precompute(state, layers, methods, topk)
        self.initial_layer = initial_layer or self.data["layers"][-1]
        if self.initial_layer not in self.data["layers"]:
            raise ValueError(
                f"initial_layer: expected one of {self.data['layers']}, "
                f"got {self.initial_layer!r}"
            )
        self.display_width = display_width
        self.element_id = f"cam-static-explorer-{next(_counter)}"

    @property
    def image_bytes(self) -> int:
        return image_bytes(self.data)

    def _repr_html_(self) -> str:
        return render_html(
            self.data, self.element_id, self.initial_layer, self.display_width
        )


def render_html(data: Mapping, element_id: str, initial_layer: str, width: int) -> str:
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    options = {"id": element_id, "layer": initial_layer, "width": width}
    layer_options = "".join(
        "<option "
        f'value="{html.escape(layer)}"{" selected" if layer == initial_layer else ""}>'
        f"{html.escape(layer)}</option>"
        for layer in data["layers"]
    )
    photo_options = "".join(
        f'<option value="{html.escape(p)}">{html.escape(p)}</option>'
        for p in data["photos"]
    )
    method_buttons = "".join(
        f'<label><input type="radio" name="{element_id}-method" value="{m}"'
        f"{' checked' if i == 0 else ''}> {html.escape(data['names'][m])}</label> "
        for i, m in enumerate(data["methods"])
    )
    return _TEMPLATE.format(
        id=element_id,
        width=width,
        bar_width=width - 40,
        photo_options=photo_options,
        layer_options=layer_options,
        method_buttons=method_buttons,
        colorbar=data["colorbar"],
        payload=payload,
        options=json.dumps(options),
        script=_SCRIPT,
    )


def explorer(
    model: nn.Module,
    photos: Mapping[str, tuple[Tensor, Tensor]],
    layers: Sequence[str],
    class_names: Sequence[str],
    static_layers: Sequence[str] | None = None,
    state: ExplorerState | None = None,
):
    """The explorer that works where it is shown.

    In a running notebook: the live :class:`~cambook.widgets.Explorer` widget (every
    layer in ``layers``, any class). When the book is built (environment
    ``CAM_BOOK_STATIC=1``, set by ``tools/build-book.sh``): a :class:`StaticExplorer`
    precomputed for ``static_layers`` (default: all of ``layers``), reusing ``state`` if
    given, whose controls work in a static web page.
    """
    if os.environ.get(STATIC_ENV, "") not in ("", "0"):
        state = state or ExplorerState(model, photos, layers, class_names)
        return StaticExplorer(state, layers=static_layers or layers)
    return Explorer(model, photos, layers, class_names).widget


_TEMPLATE = """<div id="{id}" class="cam-static-explorer" \
style="display:flex;flex-wrap:wrap;
gap:16px;align-items:flex-start;font-size:0.9em;margin:0.5em 0">
<style>#{id} label.cam-row{{display:flex;align-items:center;gap:6px;margin:4px 0}}
#{id} label.cam-row>span{{width:72px;text-align:right;white-space:nowrap}}
#{id} select,#{id} input[type=text]{{width:220px}}
#{id} .cam-note{{color:#666;font-size:0.85em;margin:0 0 6px 78px;max-width:230px}}
#{id} input:disabled{{background:#eee;cursor:not-allowed}}</style>
<div class="cam-controls">
<label class="cam-row"><span>photo</span><select \
data-role="photo">{photo_options}</select></label>
<label class="cam-row"><span>layer</span><select \
data-role="layer">{layer_options}</select></label>
<label class="cam-row"><span>top class</span><select data-role="class"></select></label>
<label class="cam-row"><span>any class</span><input type="text" data-role="any-class" \
disabled
 placeholder="needs a running kernel" title="needs a running kernel"></label>
<div class="cam-note" data-role="note">Any class by name needs a running kernel: open \
this
 chapter as a notebook. Here: the top 3 classes, precomputed.</div>
<div class="cam-row" data-role="methods" style="margin-left:78px">{method_buttons}</div>
<label class="cam-row"><span>opacity</span><input type="range" data-role="opacity" \
min="0" max="1"
 step="0.05" value="0.5"></label>
<label class="cam-row"><span></span><input type="checkbox" data-role="box"> Zhou box at
 <input type="range" data-role="ratio" min="0.05" max="0.95" step="0.05" value="0.2"
 style="width:110px"> <output data-role="ratio-value">0.20</output></label>
</div>
<div class="cam-view" style="width:{width}px">
<div data-role="caption" style="min-height:2.6em"></div>
<div style="position:relative;width:{width}px;height:{width}px">
<img data-role="photo-image" alt="photo" \
style="position:absolute;left:0;top:0;width:100%;
height:100%">
<img data-role="heat" alt="class activation map" style="position:absolute;left:0;top:0;
width:100%;height:100%;opacity:0.5">
<div data-role="zhou-box" style="position:absolute;border:2px solid #fff;display:none;
box-sizing:border-box"></div>
</div>
<div style="display:flex;align-items:center;gap:4px"><span>0</span><img alt="colour \
scale"
 src="{colorbar}" style="width:{bar_width}px;height:12px"><span>1</span></div>
</div>
<script type="application/json" data-role="data">{payload}</script>
<script>({script})({options});</script>
</div>"""

_SCRIPT = """function (opt) {
  var root = document.getElementById(opt.id);
  function el(role) { return root.querySelector('[data-role="' + role + '"]'); }
  var data = JSON.parse(el("data").textContent);
  var photo = el("photo"), layer = el("layer"), cls = el("class");
  var opacity = el("opacity"), box = el("box"), ratio = el("ratio");
  function method() { return root.querySelector('[data-role="methods"] \
input:checked').value; }
  function esc(s) { return String(s).replace(/[&<>"]/g, function (c) {
    return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]; }); }
  function fillClasses() {
    var classes = data.photos[photo.value].classes;
    cls.innerHTML = "";
    classes.forEach(function (c, i) {
      var o = document.createElement("option");
      o.value = String(i); o.textContent = c[0] + " (" + c[1].toFixed(2) + ")";
      cls.appendChild(o);
    });
  }
  function update() {
    var p = data.photos[photo.value], m = method(), t = Number(cls.value);
    var view = p.views[layer.value], c = p.classes[t], cells = view.cells;
    var heat = el("heat"), frame = el("zhou-box"), caption = el("caption");
    el("photo-image").src = p.image;
    el("ratio-value").textContent = Number(ratio.value).toFixed(2);
    var uri = view[m].maps[t];
    if (uri === null) {
      heat.style.display = "none"; frame.style.display = "none";
      caption.innerHTML = "<b>" + esc(data.names[m]) +
        "</b> is defined only for the layer that feeds the global pooling; " +
        "choose the last layer or Grad-CAM for <code>" + esc(layer.value) + "</code>.";
      return;
    }
    heat.style.display = ""; heat.src = uri; heat.style.opacity = opacity.value;
    caption.innerHTML = "<b>" + esc(c[0]) + "</b> (p=" + c[1].toFixed(2) + ") &middot; \
" +
      esc(data.names[m]) + " &middot; layer <code>" + esc(layer.value) + "</code> (" +
      cells[0] + "&times;" + cells[1] + " cells)";
    if (box.checked) {
      var r = Math.round(Number(ratio.value) * 20) - 1;
      var b = view[m].boxes[t][Math.max(0, Math.min(r, data.ratios.length - 1))];
      var sx = 100 / p.size[1], sy = 100 / p.size[0];
      frame.style.left = (b[0] * sx) + "%"; frame.style.top = (b[1] * sy) + "%";
      frame.style.width = ((b[2] - b[0]) * sx) + "%";
      frame.style.height = ((b[3] - b[1]) * sy) + "%";
      frame.style.display = "";
    } else { frame.style.display = "none"; }
  }
  photo.addEventListener("change", function () { fillClasses(); update(); });
  [layer, cls, box].forEach(function (e) { e.addEventListener("change", update); });
  [opacity, ratio].forEach(function (e) { e.addEventListener("input", update); });
  root.querySelectorAll('[data-role="methods"] input').forEach(function (e) {
    e.addEventListener("change", update); });
  fillClasses(); update();
}"""
