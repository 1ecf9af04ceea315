"""Other libraries as oracles: pytorch-grad-cam and torchcam on a seeded, random ResNet-18."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

import camlib
from camlib.postprocess import normalize


def pearson_per_image(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a = a.flatten(1).double()
    b = b.flatten(1).double()
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))


@pytest.fixture(scope="module")
def resnet_and_images():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    images = torch.randn(4, 3, 160, 160, generator=torch.Generator().manual_seed(1))
    return model, images


def test_gradcam_agrees_with_pytorch_grad_cam(resnet_and_images) -> None:
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model, images = resnet_and_images
    ours = camlib.explain(model, images, method="gradcam", layers="layer4", classes=torch.tensor([1, 3, 5, 7]))
    with GradCAM(model=model, target_layers=[model.layer4]) as reference:
        theirs = reference(input_tensor=images, targets=[ClassifierOutputTarget(c) for c in (1, 3, 5, 7)])
    assert (ours.maps[:, 0].flatten(1).amax(1) > 0).all(), "a flat map would make the comparison vacuous"
    r = pearson_per_image(ours.maps[:, 0], torch.from_numpy(np.asarray(theirs)))
    assert (r >= 0.999).all(), r


def test_gradcam_agrees_with_torchcam(resnet_and_images) -> None:
    from torchcam.methods import GradCAM

    model, images = resnet_and_images
    ours = camlib.explain(model, images, method="gradcam", layers="layer4", topk=1)
    classes = ours.classes[:, 0].tolist()
    with GradCAM(model, target_layer="layer4") as reference:
        scores = model(images)
        (theirs,) = reference(class_idx=classes, scores=scores)
    assert (ours.maps[:, 0].flatten(1).amax(1) > 0).all(), "a flat map would make the comparison vacuous"
    ours_low_res = normalize(ours.raw["layer4"][:, 0].clamp_min(0))
    r = pearson_per_image(ours_low_res, theirs.detach())
    assert (r >= 0.999).all(), r


def test_cam_agrees_with_torchcam_cam(resnet_and_images) -> None:
    from torchcam.methods import CAM

    model, images = resnet_and_images
    classes = [0, 1, 2, 3]
    ours = camlib.explain(model, images, method="cam", classes=torch.tensor(classes))
    assert ours.layers == ["layer4"]
    with CAM(model, target_layer="layer4", fc_layer="fc") as reference:
        with torch.no_grad():
            scores = model(images)
        (theirs,) = reference(class_idx=classes, scores=scores)
        (unnormalised,) = reference(class_idx=classes, scores=scores, normalized=False)
    # torchcam's CAM keeps negative evidence (no ReLU): compare the raw maps and the min-max maps.
    torch.testing.assert_close(ours.raw["layer4"][:, 0], unnormalised, rtol=1e-5, atol=1e-5)
    r = pearson_per_image(normalize(ours.raw["layer4"][:, 0]), theirs)
    assert (r >= 0.999).all(), r
