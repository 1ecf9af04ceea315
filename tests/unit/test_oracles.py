"""Other libraries as oracles: pytorch-grad-cam and torchcam on a seeded, random
ResNet-18."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torchvision

import camlib
from camlib.postprocess import normalize, to_image_maps


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
    ours = camlib.explain(
        model,
        images,
        method="gradcam",
        layers="layer4",
        classes=torch.tensor([1, 3, 5, 7]),
    )
    with GradCAM(model=model, target_layers=[model.layer4]) as reference:
        theirs = reference(
            input_tensor=images,
            targets=[ClassifierOutputTarget(c) for c in (1, 3, 5, 7)],
        )
    assert (ours.maps[:, 0].flatten(1).amax(1) > 0).all(), (
        "a flat map would make the comparison vacuous"
    )
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
    assert (ours.maps[:, 0].flatten(1).amax(1) > 0).all(), (
        "a flat map would make the comparison vacuous"
    )
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
    # torchcam's CAM keeps negative evidence (no ReLU): compare the raw maps and the
    # min-max maps.
    torch.testing.assert_close(
        ours.raw["layer4"][:, 0], unnormalised, rtol=1e-5, atol=1e-5
    )
    r = pearson_per_image(normalize(ours.raw["layer4"][:, 0]), theirs)
    assert (r >= 0.999).all(), r


# --------------------------------------------------------------------------------------
# The CAM family against pytorch-grad-cam (pgc) and torchcam, on two architectures.

GRADIENT_FAMILY = ["gradcampp", "xgradcam", "layercam", "hirescam"]


def at_trained_scale(model: torch.nn.Module) -> torch.nn.Module:
    """Scale the last linear layer by 100: logits of a trained network's size (about 10,
    not 0.1).

    At random initialisation the gradients at the last layer are ~1e-3, and the peers'
    small constants (pgc's Grad-CAM++ adds 1e-6 to a denominator of squared gradients)
    would decide the comparison; at a trained scale they are negligible, as in real use.
    """
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.mul_(100)
        last.bias.mul_(100)
    return model.eval()


@pytest.fixture(scope="module")
def random_architectures():
    """name -> (model, layer for the gradient methods, for Score-CAM, for
    Ablation-CAM)."""
    torch.manual_seed(0)
    resnet = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    torch.manual_seed(0)
    vgg = torchvision.models.vgg11_bn(weights=None, num_classes=10).eval()
    return {
        "resnet18": (resnet, "layer4", "layer3", "layer4"),
        "vgg11_bn": (vgg, "features.27", "features.6", "features.20"),
    }


@pytest.fixture(scope="module")
def architectures(random_architectures):
    """The same at a trained network's logit scale (see ``at_trained_scale``)."""
    return {
        name: (at_trained_scale(copy.deepcopy(model)), *layers)
        for name, (model, *layers) in random_architectures.items()
    }


IMAGES = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(2))
# Score-CAM and pgc's Ablation-CAM run the network B x K times: smaller inputs
SMALL = {
    "resnet18": torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3)),
    "vgg11_bn": torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(3)),
}


def pgc_maps(
    model, layer: str, method: str, images: torch.Tensor, classes: torch.Tensor
) -> torch.Tensor:
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    kind = {
        "gradcam": pgc.GradCAM,
        "gradcampp": pgc.GradCAMPlusPlus,
        "xgradcam": pgc.XGradCAM,
        "layercam": pgc.LayerCAM,
        "hirescam": pgc.HiResCAM,
        "eigencam": pgc.EigenCAM,
        "scorecam": pgc.ScoreCAM,
        "ablationcam": pgc.AblationCAM,
    }[method]
    module = dict(model.named_modules())[layer]
    with kind(model=model, target_layers=[module]) as reference:
        maps = reference(
            input_tensor=images,
            targets=[ClassifierOutputTarget(int(c)) for c in classes],
        )
    return torch.from_numpy(np.asarray(maps))


def torchcam_maps(
    model, layer: str, method: str, images: torch.Tensor, classes: torch.Tensor
) -> torch.Tensor:
    """torchcam's ReLU'd, normalised maps at the layer's resolution."""
    import torchcam.methods as tc

    kind = {
        "gradcam": tc.GradCAM,
        "gradcampp": tc.GradCAMpp,
        "xgradcam": tc.XGradCAM,
        "layercam": tc.LayerCAM,
        "scorecam": tc.ScoreCAM,
    }[method]
    with kind(
        model, target_layer=layer, input_shape=tuple(images.shape[1:])
    ) as reference:
        with torch.set_grad_enabled(method != "scorecam"):
            scores = model(images)
        (maps,) = reference(class_idx=classes.tolist(), scores=scores)
    return maps.detach()


def ours_top1(
    model, layer: str, method: str, images: torch.Tensor
) -> camlib.Explanation:
    exp = camlib.explain(model, images, method=method, layers=layer, topk=1)
    assert (exp.maps[:, 0].flatten(1).amax(1) > 0).all(), (
        "a flat map would make the comparison vacuous"
    )
    return exp


@pytest.mark.parametrize("arch", ["resnet18", "vgg11_bn"])
@pytest.mark.parametrize("method", GRADIENT_FAMILY)
def test_gradient_family_agrees_with_pytorch_grad_cam(
    architectures, arch: str, method: str
) -> None:
    model, layer, _, _ = architectures[arch]
    ours = ours_top1(model, layer, method, IMAGES)
    theirs = pgc_maps(model, layer, method, IMAGES, ours.classes[:, 0])
    r = pearson_per_image(ours.maps[:, 0], theirs)
    assert (r >= 0.999).all(), r


@pytest.mark.parametrize("arch", ["resnet18", "vgg11_bn"])
@pytest.mark.parametrize("method", ["xgradcam", "layercam"])
def test_gradient_family_agrees_with_torchcam(
    architectures, arch: str, method: str
) -> None:
    model, layer, _, _ = architectures[arch]
    ours = ours_top1(model, layer, method, IMAGES)
    theirs = torchcam_maps(model, layer, method, IMAGES, ours.classes[:, 0])
    r = pearson_per_image(normalize(ours.raw[layer][:, 0].clamp_min(0)), theirs)
    assert (r >= 0.999).all(), r


@pytest.mark.parametrize("arch", ["resnet18", "vgg11_bn"])
def test_torchcam_gradcampp_departs_from_the_paper(architectures, arch: str) -> None:
    """torchcam 0.x divides ``alpha`` in place through a boolean-mask copy, so the
    division is lost and its weights are ``sum_xy g^2 relu(g)``, not the paper's. camlib
    follows the paper (and agrees with pgc above)."""
    model, layer, _, _ = architectures[arch]
    ours = ours_top1(model, layer, "gradcampp", IMAGES)
    explainer = camlib.Explainer(model, method="gradcampp", layers=layer)
    capture = explainer.capture(IMAGES)
    f = capture.activations[layer].detach()[:, None]  # [B, 1, K, h, w]
    g = capture.gradients(ours.classes)[layer]  # [B, 1, K, h, w]
    weights = (g**2 * g.clamp_min(0)).sum(dim=(-2, -1))  # [B, 1, K]
    variant = torch.einsum("bkhw,btk->bthw", f[:, 0], weights)[:, 0]
    theirs = torchcam_maps(model, layer, "gradcampp", IMAGES, ours.classes[:, 0])
    assert (pearson_per_image(normalize(variant.clamp_min(0)), theirs) >= 0.999).all()
    assert not torch.allclose(
        normalize(ours.raw[layer][:, 0]), normalize(variant), atol=1e-3
    )


@pytest.mark.parametrize("arch", ["resnet18", "vgg11_bn"])
def test_scorecam_agrees_with_pytorch_grad_cam_and_torchcam(
    random_architectures, arch: str
) -> None:
    """At random initialisation's logit scale. At a trained scale (logits x 100) the
    channel softmax is sharp and the interpolation of the masks matters: pgc upsamples
    with align_corners=True (camlib and torchcam: False), and the correlation with pgc
    falls to 0.80-0.94 on resnet18 at 64 x 64."""
    model, _, layer, _ = random_architectures[arch]
    images = SMALL[arch]
    ours = ours_top1(model, layer, "scorecam", images)
    r = pearson_per_image(
        ours.maps[:, 0], pgc_maps(model, layer, "scorecam", images, ours.classes[:, 0])
    )
    assert (r >= 0.99).all(), r
    theirs = torchcam_maps(model, layer, "scorecam", images, ours.classes[:, 0])
    r = pearson_per_image(normalize(ours.raw[layer][:, 0].clamp_min(0)), theirs)
    assert (r >= 0.99).all(), r


@pytest.mark.parametrize("arch", ["resnet18", "vgg11_bn"])
def test_ablationcam_agrees_with_pytorch_grad_cam(architectures, arch: str) -> None:
    """Both layers end in a ReLU, so their minimum is 0 and pgc zeroes the channel as
    the paper does (where a layer has negative values pgc writes min - 1e7 instead;
    camlib always zeroes). vgg11_bn's layer is inside the feature stack: the tail is
    three convolutions and the head."""
    model, _, _, layer = architectures[arch]
    images = SMALL["resnet18"]  # 64 x 64
    ours = ours_top1(model, layer, "ablationcam", images)
    assert (
        float(
            camlib.Explainer(model, "ablationcam", layer)
            .capture(images)
            .activations[layer]
            .min()
        )
        == 0
    )
    r = pearson_per_image(
        ours.maps[:, 0],
        pgc_maps(model, layer, "ablationcam", images, ours.classes[:, 0]),
    )
    assert (r >= 0.99).all(), r


@pytest.mark.parametrize("arch", ["resnet18", "vgg11_bn"])
def test_eigencam_pytorch_grad_cam_centres_the_activations(
    architectures, arch: str
) -> None:
    """pgc subtracts each channel's spatial mean before the SVD; the paper (and camlib)
    does not. pgc's map is the centred projection (up to the SVD's sign); camlib's is
    the uncentred one."""
    from camlib.methods import first_component

    model, layer, _, _ = architectures[arch]
    ours = ours_top1(model, layer, "eigencam", IMAGES)
    f = camlib.Explainer(model, "eigencam", layer).capture(IMAGES).activations[layer]
    theirs = pgc_maps(model, layer, "eigencam", IMAGES, ours.classes[:, 0])
    centred = first_component(f, centre=True)
    size = tuple(IMAGES.shape[-2:])
    best = torch.maximum(
        pearson_per_image(to_image_maps(centred, size), theirs),
        pearson_per_image(to_image_maps(-centred, size), theirs),
    )
    assert (best >= 0.999).all(), best
    uncentred = first_component(f)
    r = pearson_per_image(ours.raw[layer][:, 0], uncentred).abs()
    assert (r >= 0.99999).all(), r


@pytest.mark.parametrize("peer", ["pytorch-grad-cam", "torchcam"])
def test_peers_depart_from_grad_cam_of_the_layer_after_an_in_place_relu(
    peer: str,
) -> None:
    """An in-place ReLU after the target layer overwrites the tensor the peers hooked.
    pgc then weighs relu(f) with the gradient at f, a mix that is Grad-CAM of no tensor;
    torchcam computes Grad-CAM of the ReLU's output relu(f), activations and gradients
    both. camlib records f itself, as the paper defines Grad-CAM of the layer."""
    from helpers import make_gapnet, random_images

    in_place, out_of_place = make_gapnet(30, inplace=True), make_gapnet(30)
    images = random_images(30, batch=3, size=24)
    layer = "features.3"  # a convolution followed by ReLU(inplace=True)
    ours = camlib.explain(in_place, images, method="gradcam", layers=layer, topk=1)
    torch.testing.assert_close(
        ours.raw[layer],
        camlib.explain(
            out_of_place, images, method="gradcam", layers=layer, topk=1
        ).raw[layer],
    )
    classes = ours.classes[:, 0]
    capture = camlib.Explainer(in_place, "gradcam", layer).capture(images)
    f = capture.activations[layer].detach()
    weights = capture.gradients(ours.classes)[layer].mean(dim=(-2, -1))  # [B, 1, K]
    mixed = torch.einsum("bkhw,btk->bthw", f.clamp_min(0), weights)[:, 0]
    if peer == "pytorch-grad-cam":
        paper, theirs = (
            pgc_maps(out_of_place, layer, "gradcam", images, classes),
            pgc_maps(in_place, layer, "gradcam", images, classes),
        )
        ours_maps, mixed_maps = (
            ours.maps[:, 0],
            to_image_maps(mixed, tuple(images.shape[-2:])),
        )
    else:
        paper, theirs = (
            torchcam_maps(out_of_place, layer, "gradcam", images, classes),
            torchcam_maps(in_place, layer, "gradcam", images, classes),
        )
        ours_maps, mixed_maps = (
            normalize(ours.raw[layer][:, 0].clamp_min(0)),
            normalize(mixed.clamp_min(0)),
        )
    assert (
        pearson_per_image(ours_maps, paper) >= 0.999
    ).all()  # no in-place op: they agree with camlib
    if peer == "pytorch-grad-cam":  # in place: pgc computes exactly the mix
        assert (pearson_per_image(mixed_maps, theirs) >= 0.999).all()
    else:
        # in place: torchcam computes Grad-CAM of the ReLU's output (layer features.4)
        after = camlib.explain(
            out_of_place,
            images,
            method="gradcam",
            layers="features.4",
            classes=ours.classes,
        )
        relu_maps = normalize(after.raw["features.4"][:, 0].clamp_min(0))
        assert (pearson_per_image(relu_maps, theirs) >= 0.999).all()
        assert (pearson_per_image(mixed_maps, theirs) < 0.99).any()  # and not the mix
    assert (pearson_per_image(ours_maps, theirs) < 0.99).any()
