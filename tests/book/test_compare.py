"""cambook.compare and cambook.family: the helpers behind Chapters 5 and 6, against hand
computations and identities."""

from __future__ import annotations

import importlib
import math
import statistics

import pytest
import torch
from torch import nn

from camlib import explain
from cambook import compare, data, family

explain_module = importlib.import_module(
    "camlib.explain"
)  # the module, not the function


def tiny_gap_net(channels: int = 6, classes: int = 3) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, channels, 3, padding=1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(channels, classes),
    ).eval()


def test_mass_on_is_the_share_of_the_map_inside_the_mask() -> None:
    maps = torch.tensor([[[1.0, 3.0], [0.0, 4.0]], [[0.0, 0.0], [0.0, 0.0]]])
    masks = torch.tensor(
        [[[True, True], [False, False]], [[True, False], [False, False]]]
    )
    share = compare.mass_on(maps, masks)
    assert share.tolist() == pytest.approx(
        [4 / 8, 0.0]
    )  # an all-zero map has no mass anywhere


def test_mass_on_upsamples_coarse_maps_to_the_mask() -> None:
    maps = torch.ones(1, 2, 2)  # flat: the share equals the mask's area fraction
    masks = torch.zeros(1, 8, 8, dtype=torch.bool)
    masks[0, :2, :] = True
    assert compare.mass_on(maps, masks).item() == pytest.approx(16 / 64)


def test_instance_pairs_put_two_scenes_of_one_class_side_by_side() -> None:
    scenes = data.make_scenes(16, seed=3)
    labels = scenes.labels // 2
    pairs, classes, masks = family.instance_pairs(scenes, labels, 4)
    count = pairs.shape[0]
    assert (
        1 <= count <= 4
        and pairs.shape[1:] == (3, 32, 64)
        and masks.shape == (count, 2, 128, 256)
    )
    assert not masks[:, 0, :, 128:].any() and not masks[:, 1, :, :128].any()
    views = data.downsample(scenes.float_images(), 4)
    for i in range(count):  # each half is a whole scene of the pair's class
        left = [j for j in range(16) if torch.equal(views[j], pairs[i, :, :, :32])]
        right = [j for j in range(16) if torch.equal(views[j], pairs[i, :, :, 32:])]
        assert left and right and left != right
        assert labels[left[0]] == labels[right[0]] == classes[i]
        assert torch.equal(masks[i, 0, :, :128], scenes.masks[left[0]])


def test_summarise_gives_mean_and_sample_std_over_seeds() -> None:
    tables = [
        {"cam": {"a": 1.0, "b": math.nan}},
        {"cam": {"a": 2.0, "b": 4.0}},
        {"cam": {"a": 4.0, "b": 6.0}},
    ]
    summary = compare.summarise(tables)
    assert summary["cam"]["a"] == pytest.approx(
        (statistics.mean([1, 2, 4]), statistics.stdev([1, 2, 4]))
    )
    assert summary["cam"]["b"] == pytest.approx(
        (5.0, statistics.stdev([4, 6]))
    )  # NaN left out


def test_markdown_table_marks_the_best_mean_of_each_column() -> None:
    summary = {
        "cam": {"x": (0.2, 0.01), "y": (0.9, 0.0)},
        "gradcam": {"x": (0.1, 0.02), "y": (0.5, 0.1)},
    }
    text = compare.markdown_table(
        summary, {"x": "deletion", "y": "insertion"}, best={"x": False, "y": True}
    )
    rows = text.splitlines()
    assert rows[0] == "| method | deletion | insertion |"
    assert rows[2] == "| CAM | 0.20 ± 0.01 | **0.90 ± 0.00** |"
    assert rows[3] == "| Grad-CAM | **0.10 ± 0.02** | 0.50 ± 0.10 |"


def test_ranks_average_the_places_over_metrics() -> None:
    summary = {
        "a": {"x": (1.0, 0), "y": (3.0, 0)},
        "b": {"x": (2.0, 0), "y": (1.0, 0)},
        "c": {"x": (3.0, 0), "y": (2.0, 0)},
    }
    # x: higher is better -> c, b, a; y: lower is better -> b, c, a
    assert compare.ranks(summary, {"x": True, "y": False}) == pytest.approx(
        {"a": 3.0, "b": 1.5, "c": 1.5}
    )


@pytest.mark.parametrize(
    "method, full, at_least",
    [
        ("gradcam", 1, 1),
        ("eigencam", 1, 1),
        ("scorecam", 1 + 6, 1 + 6),
        (
            "ablationcam",
            1,
            1,
        ),  # the layer feeds GAP + linear: the ablations in closed form
        (
            "ablationcam-reruns",
            1,
            1 + 6,
        ),  # the same with the tail run on each ablated copy
    ],
)
def test_network_rows_counts_the_passes_each_method_needs(
    method: str, full: int, at_least: int, monkeypatch
) -> None:
    if method == "ablationcam-reruns":
        monkeypatch.setattr(
            explain_module, "find_linear_head", no_linear_head
        )  # the reruns
        method = "ablationcam"
    net = tiny_gap_net(channels=6)
    images = torch.rand(2, 3, 8, 8) + 0.1  # no channel of the conv output is constant
    cost, exp = family.network_rows(net, net[3], images, method, "0")
    assert cost["full"] == full
    assert cost["evaluations"] >= at_least and cost["seconds"] > 0
    assert exp.maps.shape == (2, 1, 8, 8)


def test_flatten_head_maps_differ_and_hirescam_adds_up_to_the_score() -> None:
    torch.manual_seed(1)
    features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
    head = family.FlattenHead(features, (4, 6, 6), 3).eval()
    images = torch.rand(5, 3, 6, 6)
    classes = torch.tensor([0, 1, 2, 1, 0])
    with pytest.raises(ValueError, match="global average pooling"):
        explain(head, images, "cam", "features")
    hires = explain(head, images, "hirescam", "features", classes)
    grad = explain(head, images, "gradcam", "features", classes)
    target = (
        hires.logits.gather(1, classes[:, None])[:, 0] - head.fc.bias.detach()[classes]
    )
    torch.testing.assert_close(
        hires.raw["features"][:, 0].sum(dim=(-2, -1)), target, atol=1e-5, rtol=1e-5
    )
    weight = head.fc.weight.detach()[classes].view(5, 4, 6, 6)  # d S_c / d f by hand
    with torch.no_grad():
        f = features(images)
    torch.testing.assert_close(
        hires.raw["features"][:, 0], (weight * f).sum(1), atol=1e-5, rtol=1e-5
    )
    by_hand = torch.einsum("bkhw,bk->bhw", f, weight.mean(dim=(-2, -1)))
    torch.testing.assert_close(
        grad.raw["features"][:, 0], by_hand, atol=1e-5, rtol=1e-5
    )
    assert not torch.allclose(grad.raw["features"], hires.raw["features"], atol=1e-3)


def test_speed_ratios_divide_by_the_plain_forward_and_skip_missing_rows() -> None:
    rows = [
        ("plain forward (no_grad)", 0.5, 2),
        ("camlib gradcam", 0.6, 2),
        ("camlib gradcampp", 0.8, 2),
        ("camlib ablationcam", 0.5, 2),
        ("camlib ablationcam, tail reruns", 1.0, 2),
        ("pgc AblationCAM", 200.0, 2),
        ("floor: 1024 masked forwards", 1.0, 2),
        ("camlib scorecam (default)", 150.0, 2),
        ("pytorch-grad-cam ScoreCAM", 180.0, 2),
    ]
    bench = {"results": [{"method": n, "seconds": s, "images": i} for n, s, i in rows]}
    ratios = family.speed_ratios(bench)
    assert ratios == pytest.approx(
        {  # by hand: seconds / 0.5, the slowest gradient method
            "camlib gradient": 1.6,
            "camlib ablationcam": 1.0,
            "camlib ablationcam tail": 2.0,
            "pgc ablationcam": 400.0,
            "camlib scorecam": 300.0,
            "pgc scorecam": 360.0,
        }
    )
    rounds = [  # each row's fastest round, per image: 0.4 / 2 and 0.9 / 2 seconds
        {"method": "plain forward", "seconds": 1.0, "images": 2, "rounds": [1.0, 0.4]},
        {"method": "camlib gradcam", "seconds": 1.2, "images": 2, "rounds": [0.9, 1.5]},
        {"method": "pgc GradCAMPlusPlus", "seconds": 1.2, "images": 2, "rounds": [1.2]},
        {"method": "pgc GradCAM", "seconds": 0.8, "images": 2, "rounds": [0.8]},
    ]
    assert family.speed_ratios({"results": rounds}) == pytest.approx(
        {"camlib gradient": 0.9 / 0.4, "pgc gradient": 1.2 / 0.4}  # pgc: the slowest
    )
    no_plain = [{"method": "camlib gradcam", "seconds": 1.0, "images": 1}]
    assert family.speed_ratios({"results": no_plain}) == {}  # nothing to divide by


def test_about_rounds_to_what_one_run_supports() -> None:
    assert [family.about(x) for x in (0.7, 1.04, 1.49, 1.8, 37.0, 391.7, 452.0)] == [
        "about 1×",
        "about 1×",
        "about 1×",
        "about 2×",
        "about 40×",
        "about 400×",
        "about 500×",
    ]
    assert family.about(None) == "not run"
    text = family.speed_markdown(
        {"camlib gradient": 1.05, "camlib scorecam": 340.0, "pgc scorecam": 393.0}
    )
    rows = text.splitlines()[2:]
    assert len(rows) == 2  # the rows the run lacks are left out
    assert rows[0].endswith("| about 1× | — |") and rows[1].endswith(
        "| about 300× | about 400× |"
    )


def test_data_randomisation_command_line_writes_the_json(tmp_path) -> None:
    import json

    path = tmp_path / "data_randomisation.json"
    compare.main(
        [
            "data-randomisation",
            "--seeds",
            "3",
            "4",
            "--json",
            str(path),
            "--n-train",
            "16",
            "--n-test",
            "12",
            "--epochs",
            "2",
            "--methods",
            "cam",
            "eigencam",
        ]
    )
    result = json.loads(path.read_text())
    assert set(result) == {"meta", "seeds"}
    assert {"date", "machine", "versions", "settings", "command"} <= set(result["meta"])
    assert (
        result["meta"]["settings"]["n_train"] == 16
        and result["meta"]["settings"]["epochs"] == 2
    )
    assert [s["seed"] for s in result["seeds"]] == [3, 4]
    for seed in result["seeds"]:
        for network in ("true labels", "shuffled labels"):
            for split, count in (("training accuracy", 16), ("test accuracy", 12)):
                value = seed["networks"][network][split]
                assert 0 <= value <= 1 and (value * count) == pytest.approx(
                    round(value * count)
                )
        assert set(seed["methods"]) == {"cam", "eigencam"}
        for row in seed["methods"].values():
            assert 0 <= row["spearman_images"] <= 12
            assert -1 <= row["ssim"][0] <= 1 and len(row["ssim"]) == 2


def test_torchcam_in_place_relu_gives_grad_cam_of_the_relu_output() -> None:
    """With ReLU(inplace=True) after the hooked convolution, torchcam 0.5 takes
    activations and gradients both at relu(f): its map is camlib's Grad-CAM of the ReLU
    module (the same weights without in-place ReLUs), not of the convolution's output
    f."""
    from torchcam.methods import GradCAM

    def net(inplace: bool) -> nn.Sequential:
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(inplace=inplace),
            nn.Conv2d(8, 8, 3, padding=1),
            nn.ReLU(inplace=inplace),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(8, 5),
        ).eval()

    def scaled(
        maps: torch.Tensor,
    ) -> torch.Tensor:  # torchcam's ReLU and min-max scaling
        flat = maps.clamp_min(0).flatten(1)
        low, high = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
        return ((flat - low) / (high - low)).view_as(maps)

    images = torch.randn(4, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    reference = net(False)
    at_f = explain(reference, images, "gradcam", "2", classes=[1] * 4).raw["2"][:, 0]
    at_relu = explain(reference, images, "gradcam", "3", classes=[1] * 4).raw["3"][:, 0]
    assert (scaled(at_f) - scaled(at_relu)).abs().max() > 0.1  # the two differ here
    for inplace, expected in ((False, at_f), (True, at_relu)):
        model = net(inplace)
        with GradCAM(model, target_layer=model[2]) as extractor:
            theirs = extractor([1] * 4, model(images))[0].detach()
        torch.testing.assert_close(theirs, scaled(expected), atol=1e-4, rtol=0)


def test_control_maps_know_nothing_of_the_image() -> None:
    maps = compare.control_maps(3, size=32, seed=4)
    assert set(maps) == set(compare.CONTROLS)
    noise, centre = maps["random"], maps["centre"]
    assert noise.shape == centre.shape == (3, 32, 32)
    assert torch.equal(noise, compare.control_maps(3, size=32, seed=4)["random"])
    assert not torch.equal(noise[0], noise[1]) and 0 <= noise.min() and noise.max() <= 1
    # the bump: the same for every image, symmetric, highest in the middle; standard
    # deviation 8 pixels (a quarter of 32), pixel centres at -15.5 .. 15.5 from the
    # middle
    assert torch.equal(centre[0], centre[2])
    torch.testing.assert_close(centre[0], centre[0].flip(0).T)
    middle = centre[0, 15:17, 15:17]
    assert centre[0].max() == middle.max()
    ratio = centre[0, 15, 23] / centre[0, 15, 15]  # x from -0.5 to 7.5, y stays
    assert ratio.item() == pytest.approx(
        math.exp(-(7.5**2 - 0.5**2) / (2 * 8**2)), rel=1e-6
    )


def no_linear_head(*args, **kwargs):
    """Stands in for camlib.explain.find_linear_head: no layer feeds GAP + linear, so
    Ablation-CAM runs the network's tail on every ablated copy instead of its closed
    form."""
    raise ValueError("no GAP + linear head (test)")
