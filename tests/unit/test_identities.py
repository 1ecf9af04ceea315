"""Mathematical identities and hand computations: the oracles that need no other
library."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import camlib
from helpers import TwoByTwo, make_gapnet, random_images


def logit_from_map(
    exp: camlib.Explanation, layer: str, bias: torch.Tensor
) -> torch.Tensor:
    """S_c = GAP(M_c) + b_c, from the raw map alone."""
    return exp.raw[layer].mean(dim=(-2, -1)) + bias[exp.classes]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cam_mean_plus_bias_is_the_logit_on_random_nets(
    seed: int, device: torch.device
) -> None:
    net = make_gapnet(seed, device, channels=4 + 4 * seed, num_classes=3 + seed)
    images = random_images(seed, batch=4, device=device)
    exp = camlib.explain(net, images, method="cam", topk=3)
    expected = exp.logits.gather(1, exp.classes)
    torch.testing.assert_close(
        logit_from_map(exp, "features", net.fc.bias.detach()),
        expected,
        rtol=1e-4,
        atol=1e-5,
    )


@pytest.mark.parametrize("seed", [3, 4])
def test_gradcam_is_cam_over_positions_on_random_nets(
    seed: int, device: torch.device
) -> None:
    net = make_gapnet(seed, device)
    images = random_images(seed, batch=2, size=12, device=device)
    cam = camlib.explain(net, images, method="cam", topk=2)
    grad = camlib.explain(net, images, method="gradcam", topk=2)
    h, w = cam.raw["features"].shape[-2:]
    torch.testing.assert_close(
        grad.raw["features"] * (h * w), cam.raw["features"], rtol=1e-4, atol=1e-5
    )


def test_cam_of_a_hand_built_net_matches_hand_computation() -> None:
    f0 = [[1.0, 2.0], [3.0, 4.0]]
    f1 = [[0.0, 1.0], [0.0, -1.0]]
    images = torch.tensor([[f0, f1]])
    net = TwoByTwo().eval()
    exp = camlib.explain(net, images, method="cam", classes=torch.tensor([[0, 1]]))
    # class 0: 1*f0 + 2*f1;  class 1: 0*f0 - 1*f1
    cam0 = torch.tensor([[1.0, 4.0], [3.0, 2.0]])
    cam1 = torch.tensor([[0.0, -1.0], [0.0, 1.0]])
    torch.testing.assert_close(exp.raw["features"][0], torch.stack([cam0, cam1]))
    # logits by hand: class 0 = mean(cam0) + 0.5 = 3.0, class 1 = mean(cam1) - 0.25 =
    # -0.25
    torch.testing.assert_close(exp.logits, torch.tensor([[3.0, -0.25]]))
    # display maps: ReLU, then min-max. cam0 -> (x - 1) / 3; cam1 -> relu gives
    # [[0,0],[0,1]]
    torch.testing.assert_close(
        exp.maps[0, 0], torch.tensor([[0.0, 1.0], [2 / 3, 1 / 3]])
    )
    torch.testing.assert_close(exp.maps[0, 1], torch.tensor([[0.0, 0.0], [0.0, 1.0]]))
    # Grad-CAM: d logit_c / d f_k(x, y) = w_ck / 4 everywhere, so the map is CAM / 4.
    grad = camlib.explain(net, images, method="gradcam", classes=torch.tensor([[0, 1]]))
    torch.testing.assert_close(grad.raw["features"][0], torch.stack([cam0, cam1]) / 4)


def test_scores_are_softmax_probabilities_of_the_chosen_classes() -> None:
    net = make_gapnet(5)
    images = random_images(5)
    exp = camlib.explain(net, images, topk=2)
    probabilities = torch.softmax(net(images), dim=1)
    top = probabilities.topk(2, dim=1)
    torch.testing.assert_close(exp.classes, top.indices)
    torch.testing.assert_close(exp.probabilities, top.values)


@pytest.mark.parametrize("method", ["cam", "gradcam"])
def test_batch_equals_single_calls(method: str, device: torch.device) -> None:
    net = make_gapnet(6, device)
    images = random_images(6, batch=4, device=device)
    batch = camlib.explain(net, images, method=method, topk=2)
    for i in range(images.shape[0]):
        single = camlib.explain(net, images[i : i + 1], method=method, topk=2)
        torch.testing.assert_close(single.classes, batch.classes[i : i + 1])
        torch.testing.assert_close(
            single.raw["features"],
            batch.raw["features"][i : i + 1],
            rtol=1e-5,
            atol=1e-5,
        )
        torch.testing.assert_close(
            single.maps, batch.maps[i : i + 1], rtol=1e-5, atol=1e-5
        )


@pytest.mark.parametrize("method", ["cam", "gradcam"])
def test_k_classes_at_once_equal_k_single_class_calls(
    method: str, device: torch.device
) -> None:
    net = make_gapnet(7, device, num_classes=6)
    images = random_images(7, batch=3, device=device)
    classes = torch.tensor([[0, 5, 2], [1, 1, 4], [3, 0, 2]], device=device)
    together = camlib.explain(net, images, method=method, classes=classes)
    for k in range(classes.shape[1]):
        alone = camlib.explain(net, images, method=method, classes=classes[:, k])
        torch.testing.assert_close(
            alone.raw["features"][:, 0],
            together.raw["features"][:, k],
            rtol=1e-5,
            atol=1e-6,
        )


def test_several_layers_come_from_one_forward_pass() -> None:
    net = make_gapnet(8)
    calls = []
    net.register_forward_pre_hook(lambda *_: calls.append(1))
    images = random_images(8)
    exp = camlib.explain(
        net, images, method="gradcam", layers=["features.2", "features.4"], topk=2
    )
    assert (
        len(calls) == 1 + 0
    )  # one forward; the default-layer probe does not run when layers are given
    assert list(exp.raw) == ["features.2", "features.4"]
    assert exp.raw["features.2"].shape == (3, 2, 16, 16) and exp.raw[
        "features.4"
    ].shape == (3, 2, 8, 8)
    # The deeper layer's Grad-CAM in a multi-layer call equals a call with that layer
    # alone.
    alone = camlib.explain(net, images, method="gradcam", layers="features.4", topk=2)
    torch.testing.assert_close(alone.raw["features.4"], exp.raw["features.4"])
    torch.testing.assert_close(exp.maps_for("features.4"), alone.maps)


def test_integer_class_and_one_dimensional_classes() -> None:
    net = make_gapnet(9)
    images = random_images(9)
    by_int = camlib.explain(net, images, classes=2)
    by_row = camlib.explain(net, images, classes=torch.tensor([2, 2, 2]))
    assert by_int.classes.tolist() == [[2], [2], [2]]
    torch.testing.assert_close(by_int.raw["features"], by_row.raw["features"])


# The gradient family on a GAP + linear head, where d S_c / d f_k(x, y) = w_ck / (h w)
# everywhere.


@pytest.mark.parametrize("seed", [10, 11, 12])
def test_gradcam_hirescam_xgradcam_are_cam_over_positions(
    seed: int, device: torch.device
) -> None:
    net = make_gapnet(seed, device, channels=6 + seed % 3, num_classes=4)
    images = random_images(seed, batch=3, size=12, device=device)
    cam = camlib.explain(net, images, method="cam", topk=3).raw["features"]
    h, w = cam.shape[-2:]
    for method in ("gradcam", "hirescam", "xgradcam"):
        got = camlib.explain(net, images, method=method, topk=3).raw["features"]
        torch.testing.assert_close(got * (h * w), cam, rtol=1e-4, atol=1e-5, msg=method)


@pytest.mark.parametrize("seed", [13, 14])
def test_layercam_gradcampp_ablationcam_closed_forms_for_a_linear_head(
    seed: int, device: torch.device
) -> None:
    net = make_gapnet(seed, device)
    images = random_images(seed, batch=2, size=12, device=device)
    exp = camlib.explain(net, images, method="cam", topk=2)
    f = net.features(images).detach()  # [B, K, h, w]
    hw = f.shape[-2] * f.shape[-1]
    weight = net.fc.weight.detach()[exp.classes]  # [B, T, K]
    mean = f.mean(dim=(-2, -1))[:, None, :]  # [B, 1, K]
    score = exp.logits.gather(1, exp.classes)[..., None]  # [B, T, 1]
    closed_forms = {
        # relu(w / hw) f: CAM with only the positive weights, over h w
        "layercam": weight.clamp_min(0) / hw,
        # g = w / hw: alpha = 1 / (2 + sum(f) w / hw), weight = hw alpha relu(w / hw)
        "gradcampp": weight.clamp_min(0) / (2 + mean * weight),
        # zeroing f_k lowers S_c by w_ck mean(f_k)
        "ablationcam": weight * mean / score,
    }
    for method, channel_weights in closed_forms.items():
        expected = torch.einsum("bkhw,btk->bthw", f, channel_weights)
        got = camlib.explain(net, images, method=method, classes=exp.classes).raw[
            "features"
        ]
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5, msg=method)
