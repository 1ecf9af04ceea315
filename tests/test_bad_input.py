"""Bad input: a clear error that says what was expected and what came, and the model untouched."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import camlib
from conftest import make_gapnet, random_images
from test_lifecycle import assert_unchanged, snapshot

GOOD = random_images(0, batch=2)

CASES = [
    # (description, kwargs for explain, error type, pattern that the message must contain)
    ("not a tensor", dict(images=GOOD.numpy()), TypeError, r"expected a torch\.Tensor.*got ndarray"),
    ("3-D images", dict(images=GOOD[0]), ValueError, r"expected a 4-D tensor.*got shape \(3, 16, 16\)"),
    ("wrong channels", dict(images=GOOD[:, :1]), ValueError, r"expects 3 channels, got 1"),
    ("integer images", dict(images=(GOOD * 50).to(torch.uint8)), TypeError, r"floating-point.*got dtype torch\.uint8"),
    ("NaN", dict(images=GOOD.clone().index_fill_(0, torch.tensor([1]), float("nan"))), ValueError, r"finite.*NaN or Inf"),
    ("Inf", dict(images=torch.full_like(GOOD, float("inf"))), ValueError, r"finite.*NaN or Inf"),
    ("empty batch", dict(images=GOOD[:0]), ValueError, r"at least one image.*\(0, 3, 16, 16\)"),
    ("class too large", dict(classes=5), ValueError, r"indices in \[0, 4\], got \[5\]"),
    ("negative class", dict(classes=torch.tensor([0, -1])), ValueError, r"indices in \[0, 4\], got \[-1\]"),
    ("rows do not match batch", dict(classes=torch.tensor([1, 2, 3])), ValueError, r"one row per image.*\[2\].*got shape \(3,\)"),
    ("float classes", dict(classes=torch.tensor([1.0, 2.0])), TypeError, r"integer tensor, got dtype torch\.float32"),
    ("unknown layer", dict(layers=["feature"]), ValueError, r"no module named 'feature'.*did you mean.*'features'"),
    ("layer without a feature map", dict(layers="fc"), ValueError, r"layer 'fc': expected a 4-D feature map.*got \(2, 5\)"),
    ("unknown method", dict(method="scorecam2"), ValueError, r"method: expected one of \['cam', 'gradcam'.*got 'scorecam2'"),
    ("topk zero", dict(topk=0), ValueError, r"topk: expected a positive int, got 0"),
    ("topk too large", dict(topk=6), ValueError, r"at most 5.*got 6"),
]


@pytest.mark.parametrize("method", ["cam", "gradcam"])
@pytest.mark.parametrize("description, kwargs, error, pattern", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_rejected_and_the_model_is_untouched(method, description, kwargs, error, pattern) -> None:
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
