"""The explorer, driven through its controls without a kernel; what it shows is checked against
camlib.explain and camlib.postprocess computed independently here."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

import camlib
from camlib import models, widgets
from camlib.postprocess import overlay, zhou_boxes

EGYPTIAN_CAT = models.imagenet_classes().index("Egyptian cat")


def shown(explorer: widgets.Explorer) -> torch.Tensor:
    """The displayed picture as float RGB [3, H, W] in [0, 1]."""
    pixels = np.asarray(Image.open(io.BytesIO(explorer.image.value)).convert("RGB"))
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1).float() / 255


@pytest.fixture(scope="module")
def explorer(lite0, photos):
    display, inputs = photos
    named = {"chelsea": (display[0], inputs[0]), "coffee": (display[1], inputs[1])}
    forwards = []
    handle = lite0.register_forward_pre_hook(lambda *_: forwards.append(1))
    try:
        yield widgets.Explorer(lite0, named, models.stage_layers(lite0), models.imagenet_classes()), forwards
    finally:
        handle.remove()


def expected_overlay(model, display, inputs, layer, class_index, method, alpha):
    exp = camlib.explain(model, inputs[None], method=method, layers=layer, classes=class_index)
    return overlay(display[None], exp.maps[:, 0], alpha=alpha)[0]


def test_initial_view_is_the_top_class_cam_of_the_last_layer(explorer, lite0, photos) -> None:
    ex, _ = explorer
    display, inputs = photos
    assert ex.layer.value == "head" and ex.method.value == "cam"
    assert "Egyptian cat" in ex.caption.value and "p=0.74" in ex.caption.value
    assert ex.top_class.options[0][0].startswith("Egyptian cat (0.74")
    torch.testing.assert_close(shown(ex), expected_overlay(lite0, display[0], inputs[0], "head", EGYPTIAN_CAT, "cam", 0.5),
                               atol=1 / 255 + 1e-6, rtol=0)


def test_changing_class_layer_and_opacity_does_not_rerun_the_network_for_cam(explorer, lite0, photos) -> None:
    ex, forwards = explorer
    display, inputs = photos
    ex.photo.value = "chelsea"
    ex.method.value = "cam"
    ex.layer.value = "head"
    before = len(forwards)
    tabby = models.imagenet_classes().index("tabby")
    ex.top_class.value = tabby
    ex.opacity.value = 0.8
    ex.layer.value = "blocks.10"  # CAM does not apply here: the explorer says so instead of failing
    assert "defined only for the layer that feeds the global pooling" in ex.caption.value
    ex.layer.value = "head"
    assert len(forwards) == before
    assert "tabby" in ex.caption.value
    torch.testing.assert_close(shown(ex), expected_overlay(lite0, display[0], inputs[0], "head", tabby, "cam", 0.8),
                               atol=1 / 255 + 1e-6, rtol=0)


def test_gradcam_on_an_inner_layer_and_a_typed_class(explorer, lite0, photos) -> None:
    ex, forwards = explorer
    display, inputs = photos
    before = len(forwards)
    ex.opacity.value = 0.5
    ex.method.value = "gradcam"
    ex.layer.value = "blocks.12"
    ex.any_class.value = "tiger"
    tiger = models.imagenet_classes().index("tiger")
    assert ex.class_index == tiger and ex.top_class.value is None
    assert "<b>tiger</b>" in ex.caption.value and "(7&times;7 cells)" in ex.caption.value
    assert len(forwards) == before
    torch.testing.assert_close(
        shown(ex), expected_overlay(lite0, display[0], inputs[0], "blocks.12", tiger, "gradcam", 0.5),
        atol=1 / 255 + 1e-6, rtol=0)


def test_box_is_drawn_where_zhou_puts_it(explorer, lite0, photos) -> None:
    ex, _ = explorer
    display, inputs = photos
    ex.method.value = "cam"
    ex.layer.value = "head"
    ex.top_class.value = EGYPTIAN_CAT
    ex.box_ratio.value = 0.5
    ex.box.value = True
    exp = camlib.explain(lite0, inputs[:1], classes=EGYPTIAN_CAT)
    x0, y0, x1, y1 = zhou_boxes(exp.maps[0, 0], 0.5).tolist()
    picture = shown(ex)
    assert (picture[:, y0 + 5 : y1 - 5, x0] == 1).all() and (picture[:, y0, x0 + 5 : x1 - 5] == 1).all()
    assert not (picture[:, y0 + 5 : y1 - 5, x0 + 4] == 1).all()  # a thin frame, not a filled box
    ex.box.value = False


def test_switching_photo_runs_one_forward_and_updates_classes(explorer) -> None:
    ex, forwards = explorer
    before = len(forwards)
    ex.photo.value = "coffee"
    assert len(forwards) == before + 1
    assert ex.top_class.options[0][0].startswith("espresso") and "espresso" in ex.caption.value


def test_static_grid_uses_the_same_maps(explorer) -> None:
    ex, _ = explorer
    fig = widgets.layer_class_grid(ex.state, "chelsea", ["blocks.10", "head"], topk=2)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert "blocks.10 14x14\nEgyptian cat (p=0.74)" in titles
    assert len(fig.axes) == 4 + 1  # four panels and the colour bar
