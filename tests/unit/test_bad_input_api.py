"""Bad input for the public API beyond ``explain``: the metrics, ROAD and the sanity
checks.

Each case gets a clear error (what was expected, what came) or a documented result,
and the model is left as it was: state dict, every module's training flag, gradients,
hooks. Tiny nets on 8 x 8 images: about 4.5 CPU-seconds beyond pytest's start."""

from __future__ import annotations

import math

import pytest
import scipy.stats
import torch
from torch import nn

import camlib
from camlib import metrics, sanity
from helpers import assert_unchanged, snapshot


class Tiny(nn.Module):
    """conv -> batch norm -> ReLU -> global average pooling -> linear, 3 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()
        )
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(-2, -1)))


class ParameterFree(nn.Module):
    """Average pooling and a channel mean: logits [B, 3] without a single parameter."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.AvgPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(-2, -1))


def tiny() -> Tiny:
    """In training mode with non-trivial batch-norm statistics: a forward in training
    mode would change them, so an unchanged state dict shows that none ran."""
    torch.manual_seed(0)
    net = Tiny()
    net.features[1].running_mean.uniform_(-0.5, 0.5)
    net.features[1].running_var.uniform_(0.5, 2.0)
    return net.train()


IMAGES = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
MAPS = torch.rand(2, 8, 8, generator=torch.Generator().manual_seed(2))
NAN_MAPS = MAPS.clone().index_fill_(0, torch.tensor([1]), math.nan)

MODEL_METRICS = {
    "deletion": lambda net, images, maps, **kw: metrics.perturbation_curve(
        net, images, maps, steps=4, **kw
    ),
    "insertion": lambda net, images, maps, **kw: metrics.perturbation_curve(
        net, images, maps, mode="insertion", steps=4, **kw
    ),
    "confidence": metrics.confidence_change,
    "road": lambda net, images, maps, **kw: metrics.road(
        net, images, maps, fractions=(0.5,), **kw
    ),
}

CASES = [
    # (description, images, maps, extra arguments, error, pattern in the message)
    (
        "NaN maps",
        IMAGES,
        NAN_MAPS,
        {},
        ValueError,
        r"maps: expected finite values, got NaN",
    ),
    (
        "Inf maps",
        IMAGES,
        MAPS.clone().fill_(math.inf),
        {},
        ValueError,
        r"maps: expected finite values, got NaN or Inf",
    ),
    (
        "maps on another device",
        IMAGES,
        MAPS.to("meta"),
        {},
        ValueError,
        r"maps: expected a tensor on the images' device \(cpu\), got one on meta",
    ),
    (
        "maps of another batch",
        IMAGES,
        MAPS[:1],
        {},
        ValueError,
        r"maps: expected one map per image, \[2, H, W\] .*got shape \(1, 8, 8\)",
    ),
    (
        "integer maps",
        IMAGES,
        (MAPS * 9).long(),
        {},
        TypeError,
        r"maps: expected a floating-point tensor \[B, H, W\], got dtype torch.int64",
    ),
    (
        "batch of 0",
        IMAGES[:0],
        MAPS[:0],
        {},
        ValueError,
        r"images: expected at least one image, got an empty batch \(0, 3, 8, 8\)",
    ),
    (
        "NaN images",
        IMAGES.clone().fill_(math.nan),
        MAPS,
        {},
        ValueError,
        r"images: expected finite values, got NaN or Inf",
    ),
    (
        "class out of range",
        IMAGES,
        MAPS,
        {"classes": 3},
        ValueError,
        r"classes: expected indices in \[0, 2\], got \[3\]",
    ),
    (
        "two classes per image",
        IMAGES,
        MAPS,
        {"classes": torch.zeros(2, 2, dtype=torch.long)},
        ValueError,
        r"classes: expected one class per image, \[B\] or \[B, 1\], got \(2, 2\)",
    ),
    (
        "max_batch 0",
        IMAGES,
        MAPS,
        {"max_batch": 0},
        ValueError,
        r"max_batch: expected a positive int, got 0",
    ),
]


@pytest.mark.parametrize("name", list(MODEL_METRICS))
@pytest.mark.parametrize(
    "description, images, maps, extra, error, pattern",
    CASES,
    ids=[case[0] for case in CASES],
)
def test_model_metrics_refuse_bad_input_and_leave_the_model(
    name, description, images, maps, extra, error, pattern
) -> None:
    net = tiny()
    before = snapshot(net)
    with pytest.raises(error, match=pattern):
        MODEL_METRICS[name](net, images, maps, **extra)
    assert_unchanged(net, before)


@pytest.mark.parametrize("name", list(MODEL_METRICS))
def test_maps_of_another_size_are_upsampled_to_the_images(name) -> None:
    """Documented: a 4 x 4 map counts as its bilinear upsampling to 8 x 8."""
    net = tiny()
    before = snapshot(net)
    coarse = MAPS[:, ::2, ::2].contiguous()
    result = MODEL_METRICS[name](net, IMAGES, coarse)
    assert_unchanged(net, before)
    expected = MODEL_METRICS[name](net, IMAGES, camlib.upsample(coarse, (8, 8)))
    for field in ("scores", "auc", "after", "drop"):
        if hasattr(result, field):
            assert torch.equal(getattr(result, field), getattr(expected, field)), field


@pytest.mark.parametrize(
    "arguments, error, pattern",
    [
        ({"order": "up"}, ValueError, r"order: expected 'morf' or 'lerf', got 'up'"),
        (
            {"fractions": (0.5, 1.5)},
            ValueError,
            r"fractions: expected one or more numbers in \[0, 1\], got \(0.5, 1.5\)",
        ),
        (
            {"fractions": ()},
            ValueError,
            r"fractions: expected one or more numbers .*got \(\)",
        ),
        (
            {"noise": -0.1},
            ValueError,
            r"noise: expected a finite number >= 0, got -0.1",
        ),
    ],
    ids=["order", "fraction above 1", "no fractions", "negative noise"],
)
def test_road_refuses_bad_settings_and_leaves_the_model(
    arguments, error, pattern
) -> None:
    net = tiny()
    before = snapshot(net)
    with pytest.raises(error, match=pattern):
        metrics.road(net, IMAGES, MAPS, **arguments)
    assert_unchanged(net, before)


def test_road_imputation_wants_a_bool_mask() -> None:
    with pytest.raises(
        TypeError,
        match=r"removed: expected a bool mask \[B, H, W\], got dtype " r"torch.float32",
    ):
        metrics.linear_imputation(IMAGES, torch.ones(2, 8, 8))


# --- pointing game and localisation (no model) ----------------------------------------

MASKS = torch.zeros(2, 8, 8, dtype=torch.bool)
MASKS[:, 2:5, 3:6] = True


@pytest.mark.parametrize(
    "maps, masks, error, pattern",
    [
        (NAN_MAPS, MASKS, ValueError, r"maps: expected finite values, got NaN or Inf"),
        (
            MAPS.to("meta"),
            MASKS,
            ValueError,
            r"maps: expected a tensor on the masks' device \(cpu\), got one on meta",
        ),
        (
            MAPS,
            MASKS.clone().index_fill_(0, torch.tensor([1]), False),
            ValueError,
            r"masks: expected an object in every mask, got empty masks at rows \[1\]",
        ),
        (
            MAPS[:0],
            MASKS[:0],
            ValueError,
            r"maps: expected at least one map, got an empty batch",
        ),
        (
            MAPS,
            MASKS[0],
            ValueError,
            r"masks: expected a tensor \[B, H, W\], got \(8, 8\)",
        ),
    ],
    ids=[
        "NaN maps",
        "maps on another device",
        "an empty mask",
        "batch of 0",
        "2-D masks",
    ],
)
def test_pointing_game_refuses_bad_input(maps, masks, error, pattern) -> None:
    with pytest.raises(error, match=pattern):
        metrics.pointing_game(maps, masks)


def test_pointing_game_upsamples_coarse_maps() -> None:
    """Documented: a map of another size is upsampled to the masks' size first; a
    peak at (row 1, column 2) of a 4 x 4 map lands within 1 pixel of the object at
    rows 2-4."""
    coarse = torch.zeros(2, 4, 4)
    coarse[0, 1, 2] = 1  # bilinear upsampling puts the peak at (2, 4) or next to it
    coarse[1, 3, 0] = 1  # far from the object: rows 6-7, columns 0-1
    hits = metrics.pointing_game(coarse, MASKS, tolerance=0)
    assert hits.tolist() == [True, False]
    upsampled = camlib.upsample(coarse, (8, 8))
    assert torch.equal(hits, metrics.pointing_game(upsampled, MASKS, tolerance=0))


@pytest.mark.parametrize(
    "maps, boxes, error, pattern",
    [
        (
            NAN_MAPS,
            torch.tensor([[0, 0, 4, 4]] * 2),
            ValueError,
            r"maps: expected finite values",
        ),
        (MAPS[:0], torch.zeros(0, 4), ValueError, r"maps: expected at least one map"),
        (
            MAPS.to("meta"),
            torch.tensor([[0, 0, 4, 4]] * 2),
            ValueError,
            r"maps: expected a tensor on the boxes' device \(cpu\), got one on meta",
        ),
        (
            (MAPS * 9).long(),
            torch.tensor([[0, 0, 4, 4]] * 2),
            TypeError,
            r"maps: expected a floating-point tensor \[N, h, w\], got dtype "
            r"torch.int64",
        ),
    ],
    ids=["NaN maps", "batch of 0", "maps on another device", "integer maps"],
)
def test_localisation_refuses_bad_maps(maps, boxes, error, pattern) -> None:
    with pytest.raises(error, match=pattern):
        metrics.localisation_per_image(maps, boxes, image_size=(8, 8))


def test_localisation_with_an_empty_mask_is_off_the_object() -> None:
    """Documented: an empty mask gives ``on_object`` False; the IoU needs only the
    box."""
    maps = torch.zeros(1, 8, 8)
    maps[0, 2:4, 2:4] = 1  # Zhou box at ratio 0.5: (2, 2, 4, 4)
    empty = torch.zeros(1, 8, 8, dtype=torch.bool)
    result = metrics.localisation_per_image(
        maps, torch.tensor([[2, 2, 6, 4]]), empty, 0.5
    )
    assert result["on_object"].tolist() == [False]
    assert result["iou"].item() == pytest.approx(4 / 8)  # 2 x 2 inside 4 x 2


# --- sanity checks --------------------------------------------------------------------


@pytest.mark.parametrize(
    "check", [sanity.cascading_randomisation, sanity.independent_randomisation]
)
def test_a_model_without_parameters_has_nothing_to_randomise(check) -> None:
    net = ParameterFree().train()
    before = snapshot(net)
    with pytest.raises(
        ValueError,
        match=r"model: expected layers with weights to re-initialise "
        r"\(convolutions or linear layers\), got a "
        r"ParameterFree without any",
    ):
        check(net, IMAGES)
    assert_unchanged(net, before)


@pytest.mark.parametrize(
    "layers, pattern",
    [
        (
            ["nope"],
            r"layers: expected names of modules with parameters to re-initialise, "
            r"got \['nope'\]",
        ),
        (["features.2"], r"got \['features.2'\]"),  # a ReLU: nothing to re-initialise
        ([], r"got \[\]"),
    ],
    ids=["unknown", "a ReLU", "none"],
)
def test_randomisation_refuses_layers_it_cannot_reinitialise(layers, pattern) -> None:
    net = tiny()
    before = snapshot(net)
    with pytest.raises(ValueError, match=pattern):
        sanity.cascading_randomisation(net, IMAGES, layers=layers)
    assert_unchanged(net, before)


def test_randomisation_leaves_the_model_as_it_was() -> None:
    net = tiny()
    before = snapshot(net)
    images = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(4))
    result = sanity.cascading_randomisation(net, images)  # SSIM wants 11 x 11 or more
    assert [c.step for c in result.comparisons] == ["fc", "features.0"]
    assert_unchanged(net, before)


def test_identical_maps_correlate_perfectly() -> None:
    """Documented: identical maps give Spearman 1 (scipy as the oracle, ties
    included) and SSIM 1 (the index is 1 when both local statistics agree)."""
    maps = torch.rand(3, 12, 12, generator=torch.Generator().manual_seed(3))
    maps[0, :4] = 0.5  # ties
    rho = sanity.spearman(maps, maps.clone())
    for row, value in enumerate(rho.tolist()):
        oracle = scipy.stats.spearmanr(
            maps[row].flatten(), maps[row].flatten()
        ).statistic
        assert value == pytest.approx(oracle, abs=1e-12) and oracle == pytest.approx(1)
    assert sanity.ssim(maps, maps.clone()).tolist() == pytest.approx(
        [1.0] * 3, abs=1e-12
    )


def test_identical_constant_maps_have_no_rank_correlation() -> None:
    """Documented: a constant map has no ranking, so Spearman is NaN (as scipy's),
    SSIM is 1, and a comparison's summary leaves the NaN out and counts 0 images."""
    maps = torch.full((2, 12, 12), 0.25)
    rho = sanity.spearman(maps, maps.clone())
    assert all(math.isnan(value) for value in rho.tolist())
    with pytest.warns(scipy.stats.ConstantInputWarning):
        assert math.isnan(
            scipy.stats.spearmanr(maps[0].flatten(), maps[0].flatten()).statistic
        )
    assert sanity.ssim(maps, maps.clone()).tolist() == pytest.approx(
        [1.0, 1.0], abs=1e-12
    )
    summary = sanity.Comparison("fc", rho, sanity.ssim(maps, maps)).summary()
    assert math.isnan(summary["spearman"]) and summary["images"] == 0


@pytest.mark.parametrize(
    "a, b, pattern",
    [
        (MAPS, NAN_MAPS, r"maps: expected finite values, got NaN or Inf"),
        (
            MAPS,
            MAPS[:1],
            r"maps: expected two tensors of one shape \[N, ...\], got \(2, 8, 8\) "
            r"and \(1, 8, 8\)",
        ),
        (
            MAPS[:0],
            MAPS[:0],
            r"maps: expected at least one map, got an empty batch \(0, 8, 8\)",
        ),
        (
            MAPS,
            MAPS.to("meta"),
            r"maps: expected a tensor on the first maps' device \(cpu\), "
            r"got one on meta",
        ),
    ],
    ids=["NaN", "shapes differ", "batch of 0", "devices differ"],
)
def test_similarities_refuse_bad_maps(a, b, pattern) -> None:
    for similarity in (sanity.spearman, sanity.ssim):
        with pytest.raises(ValueError, match=pattern):
            similarity(a, b)
