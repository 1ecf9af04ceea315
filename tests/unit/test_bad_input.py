"""Bad input: a clear error that says what was expected and what came, and the model
untouched."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import camlib
from helpers import make_gapnet, random_images
from helpers import assert_unchanged, snapshot

from helpers import CASES, GOOD


@pytest.mark.parametrize("method", ["cam", "gradcam"])
@pytest.mark.parametrize(
    "description, kwargs, error, pattern", CASES, ids=[c[0] for c in CASES]
)
def test_bad_input_is_rejected_and_the_model_is_untouched(
    method, description, kwargs, error, pattern
) -> None:
    net = make_gapnet(0, num_classes=5).train()
    before = snapshot(net)
    arguments = {"images": GOOD, "method": method, **kwargs}
    with pytest.raises(error, match=pattern):
        camlib.explain(net, **arguments)
    assert_unchanged(net, before)


def test_cam_on_a_model_without_a_linear_head_names_gradcam() -> None:
    class MlpHead(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Conv2d(3, 4, 3)
            self.head = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 5))

        def forward(self, x):
            return self.head(self.features(x).mean(dim=(-2, -1)))

    net = MlpHead().eval()
    with pytest.raises(ValueError, match=r"not of that form.*method='gradcam'"):
        camlib.explain(net, GOOD, method="cam")
    assert camlib.explain(net, GOOD, method="gradcam").maps.shape == (2, 1, 16, 16)


def test_cam_on_a_layer_that_does_not_feed_the_pooling_names_gradcam() -> None:
    net = make_gapnet(1)
    with pytest.raises(ValueError, match=r"layer 'features.2'.*method='gradcam'"):
        camlib.explain(net, GOOD, method="cam", layers="features.2")


def test_model_that_is_not_a_module() -> None:
    with pytest.raises(TypeError, match=r"torch\.nn\.Module, got function"):
        camlib.explain(lambda x: x, GOOD)


def test_unknown_layer_suggests_every_name_tied_with_the_last_one_shown() -> None:
    # Hand count with difflib's ratio 2M / T: "blocks.1O" shares "blocks.1" (M = 8) with
    # "blocks.1" (T = 17, 0.941) and with each of blocks.10..blocks.15 (T = 18, 0.889);
    # blocks.0, blocks.2..9 share "blocks." only (0.824). Five names would cut the
    # six-way tie at 0.889, so all seven are listed, ties in alphabetical order.
    model = nn.Sequential()
    model.blocks = nn.Sequential(*[nn.Identity() for _ in range(16)])
    with pytest.raises(ValueError) as caught:
        camlib.explain(model, random_images(1), layers="blocks.1O")
    expected = ["blocks.1"] + [f"blocks.1{d}" for d in range(6)]
    assert f"did you mean one of {expected}?" in str(caught.value)
