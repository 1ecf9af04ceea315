"""The GAP/linear identities on the pretrained EfficientNet-Lite0 and the book's
photos."""

from __future__ import annotations

import torch

import camlib


def logit_from_map(
    exp: camlib.Explanation, layer: str, bias: torch.Tensor
) -> torch.Tensor:
    """S_c = GAP(M_c) + b_c, from the raw map alone."""
    return exp.raw[layer].mean(dim=(-2, -1)) + bias[exp.classes]


def test_cam_mean_plus_bias_is_the_logit_on_pretrained_lite0(lite0, photos) -> None:
    _, inputs = photos
    exp = camlib.explain(lite0, inputs, method="cam", topk=5)
    assert exp.layers == ["head"]
    expected = exp.logits.gather(1, exp.classes)
    got = logit_from_map(exp, "head", lite0.classifier.bias.detach())
    assert ((got - expected).abs() <= 1e-4 * expected.abs().clamp_min(1)).all()


def test_gradcam_is_cam_over_positions_on_pretrained_lite0(lite0, photos) -> None:
    _, inputs = photos
    cam = camlib.explain(lite0, inputs, method="cam", topk=3)
    grad = camlib.explain(lite0, inputs, method="gradcam", topk=3)
    h, w = cam.raw["head"].shape[-2:]
    torch.testing.assert_close(
        grad.raw["head"] * (h * w), cam.raw["head"], rtol=1e-4, atol=1e-4
    )
    torch.testing.assert_close(grad.maps, cam.maps, rtol=0, atol=1e-4)


def test_hirescam_sums_to_the_logit_minus_bias_on_pretrained_lite0(
    lite0, photos
) -> None:
    _, inputs = photos
    exp = camlib.explain(lite0, inputs, method="hirescam", topk=2)
    expected = (
        exp.logits.gather(1, exp.classes) - lite0.classifier.bias.detach()[exp.classes]
    )
    got = exp.raw["head"].sum(dim=(-2, -1))
    assert ((got - expected).abs() <= 1e-4 * expected.abs().clamp_min(1)).all()
