"""Every method of the family through the pipeline: batched, several layers and classes,
on the input's device, under no_grad with frozen parameters, bad input rejected, no
hooks left behind."""

from __future__ import annotations

import pytest
import torch

import camlib
from helpers import hook_count, make_gapnet, random_images
from helpers import CASES, GOOD
from helpers import assert_unchanged, snapshot

FAMILY = [
    "gradcampp",
    "xgradcam",
    "layercam",
    "hirescam",
    "eigencam",
    "scorecam",
    "ablationcam",
]
LAYERS = ["features.2", "features.4"]


def test_every_method_is_registered_once_with_its_name() -> None:
    assert list(camlib.METHODS) == ["cam", "gradcam", *FAMILY]
    assert all(camlib.METHODS[name].name == name for name in camlib.METHODS)


@pytest.mark.parametrize("method", FAMILY)
def test_batch_and_several_classes_and_layers_equal_single_calls(
    method: str, device: torch.device
) -> None:
    net = make_gapnet(20, device, num_classes=6)
    images = random_images(20, batch=3, device=device)
    classes = torch.tensor([[0, 5], [1, 1], [3, 0]], device=device)
    together = camlib.explain(
        net, images, method=method, layers=LAYERS, classes=classes
    )
    assert together.maps.device == images.device and together.maps.shape == (
        3,
        2,
        16,
        16,
    )
    assert together.raw["features.4"].shape == (3, 2, 8, 8)
    for i in range(3):
        for t in range(2):
            for layer in LAYERS:
                alone = camlib.explain(
                    net,
                    images[i : i + 1],
                    method=method,
                    layers=layer,
                    classes=classes[i : i + 1, t],
                )
                torch.testing.assert_close(
                    alone.raw[layer][0, 0],
                    together.raw[layer][i, t],
                    rtol=1e-4,
                    atol=1e-6,
                )
    assert (
        torch.isfinite(together.maps).all()
        and (together.maps.amax(dim=(-2, -1)) > 0).any()
    )


@pytest.mark.parametrize("method", FAMILY)
def test_under_no_grad_with_frozen_parameters(
    method: str, device: torch.device
) -> None:
    net = make_gapnet(21, device)
    images = random_images(21, device=device)
    expected = camlib.explain(net, images, method=method, topk=2)
    for p in net.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        got = camlib.explain(net, images, method=method, topk=2)
        assert not torch.is_grad_enabled()
    torch.testing.assert_close(got.raw["features"], expected.raw["features"])
    assert all(not p.requires_grad for p in net.parameters())


@pytest.mark.parametrize("method", FAMILY)
def test_model_untouched_and_no_hooks_left(method: str) -> None:
    net = make_gapnet(22).train()
    net.features[0].weight.requires_grad_(False)
    net(random_images(22)).sum().backward()
    before = snapshot(net)
    with camlib.Explainer(net, method=method, layers=LAYERS) as explainer:
        explainer(random_images(23), topk=2)
        explainer(random_images(24), topk=1)
        assert hook_count(net) == 2
    assert_unchanged(net, before)
    camlib.explain(net, random_images(25), method=method)
    assert_unchanged(net, before)


@pytest.mark.parametrize("method", ["scorecam", "ablationcam"])
def test_batch_size_changes_nothing_but_the_cost(method: str) -> None:
    net = make_gapnet(26)
    images = random_images(26, batch=2)
    reference = camlib.explain(net, images, method=method, topk=2)
    for batch_size in (1, 3, 1000):
        got = camlib.explain(net, images, method=method, topk=2, batch_size=batch_size)
        torch.testing.assert_close(
            got.raw["features"], reference.raw["features"], rtol=1e-5, atol=1e-6
        )
    with pytest.raises(
        ValueError, match=r"batch_size: expected None or a positive int, got 0"
    ):
        camlib.explain(net, images, method=method, batch_size=0)


def test_progress_bars_only_when_asked(capsys) -> None:
    net = make_gapnet(27)
    images = random_images(27, batch=1)
    camlib.explain(net, images, method="scorecam")
    assert "Score-CAM" not in capsys.readouterr().err
    camlib.explain(net, images, method="scorecam", progress=True)
    assert "Score-CAM" in capsys.readouterr().err
    # at a layer that does not feed the pooling (at one that does, no pass is needed)
    camlib.explain(
        net, images, method="ablationcam", layers="features.2", progress=True
    )
    assert "Ablation-CAM" in capsys.readouterr().err


def test_eigencam_gives_every_class_the_same_map() -> None:
    net = make_gapnet(28)
    exp = camlib.explain(net, random_images(28), method="eigencam", topk=3)
    torch.testing.assert_close(exp.raw["features"][:, 0], exp.raw["features"][:, 2])


@pytest.mark.parametrize("method", FAMILY)
@pytest.mark.parametrize(
    "description, kwargs, error, pattern", CASES, ids=[c[0] for c in CASES]
)
def test_bad_input_is_rejected_and_the_model_is_untouched(
    method, description, kwargs, error, pattern
) -> None:
    net = make_gapnet(0, num_classes=5).train()
    before = snapshot(net)
    with pytest.raises(error, match=pattern):
        camlib.explain(net, **{"images": GOOD, "method": method, **kwargs})
    assert_unchanged(net, before)


def test_layers_may_be_names_modules_or_a_mix() -> None:
    net = make_gapnet(3)
    images = random_images(3, batch=2)
    by_name = camlib.explain(
        net, images, method="gradcam", layers=["features.2", "features.4"]
    )
    by_module = camlib.explain(
        net, images, method="gradcam", layers=[net.features[2], net.features[4]]
    )
    mixed = camlib.explain(
        net, images, method="gradcam", layers=[net.features[2], "features.4"]
    )
    single = camlib.explain(net, images, method="gradcam", layers=net.features[4])
    assert by_module.layers == mixed.layers == ["features.2", "features.4"]
    assert single.layers == ["features.4"]
    for other in (by_module, mixed):
        for layer in by_name.layers:
            torch.testing.assert_close(other.raw[layer], by_name.raw[layer])


def test_the_default_method_is_gradcam_whose_maps_are_cams_on_a_gap_layer() -> None:
    """Grad-CAM = CAM / (h w) at a layer feeding GAP + linear, so the displayed maps
    agree."""
    net = make_gapnet(4)
    images = random_images(4, batch=3)
    default = camlib.explain(net, images, topk=2)
    cam = camlib.explain(net, images, method="cam", topk=2)
    assert default.method == "gradcam"
    h, w = cam.raw["features"].shape[-2:]
    torch.testing.assert_close(
        default.raw["features"] * (h * w), cam.raw["features"], rtol=1e-4, atol=1e-5
    )
    torch.testing.assert_close(default.maps, cam.maps, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("method", ["cam", "scorecam", "ablationcam", "eigencam"])
def test_methods_without_gradients_run_under_inference_mode(method: str) -> None:
    net = make_gapnet(5)
    images = random_images(5, batch=2)
    expected = camlib.explain(net, images, method=method, topk=2)
    before = snapshot(net)
    with torch.inference_mode():
        got = camlib.explain(net, images, method=method, topk=2)
    torch.testing.assert_close(got.raw["features"], expected.raw["features"])
    assert_unchanged(net, before)


def test_a_gradient_method_under_inference_mode_is_a_clear_error() -> None:
    net = make_gapnet(6)
    before = snapshot(net)
    with (
        torch.inference_mode(),
        pytest.raises(
            RuntimeError,
            match=r"needs gradients.*"
            r"inference_mode\(\) disables",
        ),
    ):
        camlib.explain(net, random_images(6, batch=2), method="gradcam")
    assert_unchanged(net, before)


def test_images_made_under_inference_mode_work_afterwards() -> None:
    net = make_gapnet(7)
    plain = random_images(7, batch=2)
    with torch.inference_mode():
        frozen = plain.clone()
    assert frozen.is_inference()
    torch.testing.assert_close(
        camlib.explain(net, frozen, method="gradcam").raw["features"],
        camlib.explain(net, plain, method="gradcam").raw["features"],
    )
