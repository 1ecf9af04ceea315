"""camlib.metrics: known answers on a linear model, pytorch-grad-cam and scipy as
oracles."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from camlib import explain, metrics
from helpers import make_gapnet, random_images


class LinearOverPixels(nn.Module):
    """S_0 = sum(w * x), S_1 = 0, so P_0 = sigmoid(sum(w * x)): pixel (y, x) contributes
    exactly a(y, x) = sum over channels of w * x, and deleting it (zero baseline)
    removes that."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        score = (images * self.weight).sum(dim=(1, 2, 3))
        return torch.stack([score, torch.zeros_like(score)], dim=1)


@pytest.fixture
def linear_case(device):
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(3, 8, 8, generator=generator).to(device) * 0.3
    images = torch.randn(4, 3, 8, 8, generator=generator).to(device)
    model = LinearOverPixels(weight).to(device)
    attribution = (images * weight).sum(1)  # [B, H, W]: the exact attribution
    return model, images, attribution


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def test_deletion_curve_of_the_exact_attribution_is_the_hand_computed_one(
    linear_case,
) -> None:
    model, images, attribution = linear_case
    curves = metrics.perturbation_curve(
        model, images, attribution, classes=0, steps=16, max_batch=7
    )
    a = attribution.flatten(1).double().cpu().numpy()
    descending = -np.sort(-a, axis=1)
    removed = np.concatenate(
        [np.zeros((4, 1)), np.cumsum(descending, axis=1)], axis=1
    )  # [B, 65]
    counts = np.arange(0, 65, 4)  # 64 pixels in 16 steps: 4 per step
    expected = sigmoid(a.sum(1, keepdims=True) - removed[:, counts])
    np.testing.assert_allclose(
        curves.scores.cpu().numpy(), expected, rtol=1e-4, atol=1e-5
    )
    np.testing.assert_allclose(curves.fractions.cpu().numpy(), counts / 64)
    np.testing.assert_allclose(
        curves.auc.cpu().numpy(), np.trapezoid(expected, counts / 64, axis=1), rtol=1e-4
    )


def test_exact_attribution_makes_the_score_fall_fastest_and_rise_fastest(
    linear_case, device
) -> None:
    model, images, attribution = linear_case
    generator = torch.Generator().manual_seed(1)
    others = [
        torch.rand(attribution.shape, generator=generator).to(device),  # random order
        -attribution,  # reversed
        model.weight.detach()
        .sum(0)
        .expand_as(attribution)
        .contiguous(),  # weights only
        images.abs().sum(1),
    ]  # input magnitude only
    for mode in ("deletion", "insertion"):
        best = metrics.perturbation_curve(
            model, images, attribution, 0, mode=mode, steps=16
        )
        for other in others:
            worse = metrics.perturbation_curve(
                model, images, other, 0, mode=mode, steps=16
            )
            if (
                mode == "deletion"
            ):  # removing the n largest contributions leaves the least score
                assert (best.scores <= worse.scores + 1e-6).all() and (
                    best.auc < worse.auc
                ).all()
            else:  # inserting them first gives the most
                assert (best.scores >= worse.scores - 1e-6).all() and (
                    best.auc > worse.auc
                ).all()


def test_curve_endpoints_and_step_counts(device) -> None:
    model = make_gapnet(0, device)
    images = random_images(1, batch=3, size=12, device=device)
    maps = torch.rand(3, 12, 12, generator=torch.Generator().manual_seed(2)).to(device)
    deletion = metrics.perturbation_curve(
        model, images, maps, pixels_per_step=10, baseline="mean"
    )
    probs = model(images).softmax(1)
    fill = images.mean(dim=(-2, -1), keepdim=True).expand_as(images)
    torch.testing.assert_close(deletion.scores[:, 0], probs.max(1).values)
    torch.testing.assert_close(
        deletion.scores[:, -1],
        model(fill).softmax(1).gather(1, deletion.classes[:, None])[:, 0],
    )
    expected = torch.tensor(
        [min(10 * s, 144) / 144 for s in range(16)]
    )  # ceil(144 / 10) = 15 steps
    torch.testing.assert_close(deletion.fractions.cpu(), expected)
    assert metrics.step_counts(10, steps=4).tolist() == [
        0,
        3,
        5,
        8,
        10,
    ]  # 2.5 and 7.5 round up
    insertion = metrics.perturbation_curve(
        model, images, maps, mode="insertion", steps=5, baseline="blur"
    )
    torch.testing.assert_close(insertion.scores[:, -1], probs.max(1).values)


def test_ties_are_broken_in_row_major_order() -> None:
    maps = torch.tensor([[[1.0, 2.0], [2.0, 1.0]]])
    assert metrics.pixel_order(maps).tolist() == [[1, 2, 0, 3]]


def test_chunk_size_does_not_change_the_numbers(device) -> None:
    model = make_gapnet(3, device)
    images = random_images(4, batch=5, size=12, device=device)
    maps = explain(model, images, "gradcam").maps
    small = metrics.perturbation_curve(model, images, maps, steps=8, max_batch=3)
    large = metrics.perturbation_curve(model, images, maps, steps=8, max_batch=1000)
    torch.testing.assert_close(small.scores, large.scores)


def test_confidence_change_matches_pytorch_grad_cam(device) -> None:
    from pytorch_grad_cam.metrics.cam_mult_image import (
        DropInConfidence,
        IncreaseInConfidence,
    )
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    model = make_gapnet(5, device)
    images = random_images(6, batch=8, size=16, device=device)
    for method in ("cam", "gradcam"):
        exp = explain(model, images, method)
        ours = metrics.confidence_change(model, images, exp.maps)
        targets = [ClassifierOutputSoftmaxTarget(int(c)) for c in exp.classes[:, 0]]
        cams = exp.maps[:, 0].cpu().numpy()
        # pytorch-grad-cam's "drop" is max(0, Y - O), without Chattopadhay's division by
        # Y
        theirs_drop = DropInConfidence()(images, cams, targets, model)
        theirs_increase = IncreaseInConfidence()(images, cams, targets, model)
        np.testing.assert_allclose(
            (ours.drop * ours.before / 100).cpu().numpy(),
            theirs_drop.ravel(),
            atol=1e-6,
        )
        np.testing.assert_array_equal(
            ours.increase.cpu().numpy(), theirs_increase.ravel() > 0
        )
    assert 0 <= ours.average_drop <= 100 and 0 <= ours.increase_rate <= 100


def test_confidence_change_by_hand(linear_case) -> None:
    model, images, _ = linear_case
    maps = torch.zeros(
        4, 8, 8, device=images.device
    )  # the image vanishes: S_0 = 0, P_0 = 1/2
    result = metrics.confidence_change(model, images, maps, classes=0)
    before = torch.sigmoid((images * model.weight).sum(dim=(1, 2, 3)))
    torch.testing.assert_close(result.after, torch.full_like(before, 0.5))
    torch.testing.assert_close(result.drop, (before - 0.5).clamp_min(0) / before * 100)
    assert result.increase.tolist() == (before < 0.5).tolist()


def test_pointing_game_by_hand() -> None:
    masks = torch.zeros(3, 40, 60, dtype=torch.bool)
    masks[:, 5:10, 30:35] = True  # object: columns 30..34
    maps = torch.zeros(3, 40, 60)
    maps[0, 7, 32] = 1  # on the object
    maps[1, 7, 18] = 1  # 12 px left of column 30
    maps[2, 7, 10] = 1  # 20 px left
    assert metrics.pointing_game(maps, masks).tolist() == [True, True, False]
    assert metrics.pointing_game(maps, masks, tolerance=0).tolist() == [
        True,
        False,
        False,
    ]
    # each map pixel stands for 2 original pixels across: 12 map pixels are 24 original
    # ones
    wide = torch.tensor([[2.0, 1.0]] * 3)
    assert metrics.pointing_game(maps, masks, pixel_size=wide).tolist() == [
        True,
        False,
        False,
    ]
    boxes = torch.tensor([[30, 5, 35, 10]] * 3)
    assert torch.equal(metrics.boxes_to_masks(boxes, (40, 60)), masks)


def test_pointing_game_matches_scipy_distance_transform() -> None:
    from scipy.ndimage import distance_transform_edt

    generator = torch.Generator().manual_seed(7)
    maps = torch.rand(20, 30, 30, generator=generator)
    boxes = torch.stack(
        [
            torch.randint(0, 15, (20,), generator=generator),
            torch.randint(0, 15, (20,), generator=generator),
        ],
        1,
    )
    boxes = torch.cat(
        [boxes, boxes + torch.randint(1, 15, (20, 2), generator=generator)], 1
    )
    masks = metrics.boxes_to_masks(boxes, (30, 30))
    size = torch.tensor([1.5, 0.5])
    hits = metrics.pointing_game(
        maps, masks, tolerance=6, pixel_size=size.expand(20, 2)
    )
    for i in range(20):
        y, x = divmod(int(maps[i].argmax()), 30)
        distance = distance_transform_edt(~masks[i].numpy(), sampling=(0.5, 1.5))[y, x]
        assert bool(hits[i]) == (distance <= 6)
    assert 0 < hits.sum() < 20  # both outcomes occur


def test_localisation_by_hand_and_threshold_sweep() -> None:
    maps = torch.zeros(2, 16, 16)
    maps[0, 4:8, 2:6] = 1.0  # covers pixels 8..15 x 16..31 of a 64 x 64 image (scale 4)
    maps[1, 0:2, 0:2] = 1.0
    boxes = torch.tensor([[8, 16, 24, 32], [8, 16, 24, 32]])
    masks = metrics.boxes_to_masks(boxes, (64, 64))
    result = metrics.localisation(
        maps, boxes, masks, torch.tensor([True, False]), ratio=0.2
    )
    assert result == {"gt_known": 0.5, "top1": 0.5, "pointing": 0.5, "mean_iou": 0.5}
    sweep = metrics.threshold_sweep(
        maps, boxes, masks, torch.tensor([True, True]), ratios=(0.1, 0.9)
    )
    assert [row["ratio"] for row in sweep] == [0.1, 0.9] and sweep[0]["gt_known"] == 0.5


def test_metrics_leave_the_model_as_it_was(device) -> None:
    model = make_gapnet(8, device).train()
    images = random_images(9, batch=2, size=12, device=device)
    maps = torch.rand(2, 12, 12).to(device)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    metrics.perturbation_curve(model, images, maps, steps=4)
    metrics.confidence_change(model, images, maps)
    assert all(m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"maps": torch.rand(3, 12, 12)}, "one map per image"),
        ({"maps": torch.ones(2, 12, 12, dtype=torch.long)}, "floating-point"),
        ({"baseline": "noise"}, "baseline: expected one of"),
        ({"mode": "both"}, "mode: expected"),
        ({"steps": 0}, "steps: expected a positive int"),
        ({"classes": torch.tensor([[0, 1], [1, 2]])}, "one class per image"),
        ({"classes": 9}, "classes: expected indices in"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(kwargs, message) -> None:
    model = make_gapnet(0)
    arguments = {
        "model": model,
        "images": random_images(0, batch=2, size=12),
        "maps": torch.rand(2, 12, 12),
    }
    with pytest.raises((ValueError, TypeError), match=message):
        metrics.perturbation_curve(**(arguments | kwargs))


def test_pointing_game_refuses_empty_masks() -> None:
    with pytest.raises(ValueError, match="empty masks at rows \\[1\\]"):
        metrics.pointing_game(
            torch.rand(2, 8, 8), torch.tensor([[[1]], [[0]]]).bool().expand(2, 8, 8)
        )


def test_localisation_against_a_per_image_loop_with_scipy_components() -> None:
    """Chapter 4 and Chapter 6 share camlib.metrics.localisation; here it is recomputed
    image by image with scipy's connected components and the IoU by hand, on CAM-like
    random maps."""
    import numpy as np
    from scipy import ndimage

    generator = torch.Generator().manual_seed(4)
    maps = torch.nn.functional.avg_pool2d(
        torch.rand(30, 1, 20, 20, generator=generator), 5, 1, 2
    )[:, 0]
    starts = torch.randint(0, 40, (30, 2), generator=generator)
    boxes = torch.cat(
        [starts, starts + torch.randint(8, 40, (30, 2), generator=generator)], 1
    )
    masks = metrics.boxes_to_masks(boxes, (80, 80))
    correct = torch.rand(30, generator=generator) < 0.7
    for ratio in (0.2, 0.5):
        hits, tops, points, ious = [], [], [], []
        for m, box, mask, right in zip(
            maps.numpy(), boxes.tolist(), masks.numpy(), correct.tolist()
        ):
            labels, count = ndimage.label(
                m >= ratio * m.max(), structure=np.ones((3, 3))
            )
            sizes = ndimage.sum(np.ones_like(m), labels, index=range(1, count + 1))
            rows, cols = np.nonzero(labels == 1 + int(np.argmax(sizes)))
            x0, y0, x1, y1 = (
                cols.min() * 4,
                rows.min() * 4,
                (cols.max() + 1) * 4,
                (rows.max() + 1) * 4,
            )
            inter = max(0, min(x1, box[2]) - max(x0, box[0])) * max(
                0, min(y1, box[3]) - max(y0, box[1])
            )
            union = (
                (x1 - x0) * (y1 - y0) + (box[2] - box[0]) * (box[3] - box[1]) - inter
            )
            iou = inter / union
            peak_row, peak_col = divmod(int(m.argmax()), 20)
            hits.append(iou >= 0.5)
            tops.append(iou >= 0.5 and right)
            points.append(bool(mask[peak_row * 4 + 2, peak_col * 4 + 2]))
            ious.append(iou)
        got = metrics.localisation(maps, boxes, masks, correct, ratio)
        assert got["gt_known"] == pytest.approx(np.mean(hits))
        assert got["top1"] == pytest.approx(np.mean(tops))
        assert got["pointing"] == pytest.approx(np.mean(points))
        assert got["mean_iou"] == pytest.approx(np.mean(ious), abs=1e-6)


def test_linear_imputation_is_exact_on_a_ramp_and_matches_the_road_authors_solver() -> (
    None
):
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    ys, xs = torch.meshgrid(torch.arange(12.0), torch.arange(12.0), indexing="ij")
    ramp = (0.3 * xs - 0.2 * ys + 1).expand(1, 3, 12, 12).double()
    removed = torch.zeros(1, 12, 12, dtype=torch.bool)
    # an interior hole: a linear function is its own neighbour mean
    removed[0, 3:8, 4:9] = True
    torch.testing.assert_close(metrics.linear_imputation(ramp, removed), ramp)
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(3, 3, 14, 11, generator=generator, dtype=torch.float64)
    removed = torch.rand(3, 14, 11, generator=generator) < torch.tensor(
        [0.2, 0.6, 0.9]
    ).view(3, 1, 1)
    removed[2, :, :5] = True  # a hole touching the border
    ours = metrics.linear_imputation(images, removed)
    oracle = NoisyLinearImputer(noise=0.0)
    for i in range(3):
        theirs = oracle(images[i].float(), (~removed[i]).float())
        torch.testing.assert_close(ours[i].float(), theirs, atol=1e-5, rtol=1e-5)


def test_road_matches_pytorch_grad_cam_without_noise() -> None:
    from pytorch_grad_cam.metrics.road import (
        ROADLeastRelevantFirst,
        ROADMostRelevantFirst,
    )
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    model = make_gapnet(6)
    images = random_images(
        7, batch=4, size=10
    )  # 100 pixels: percentile p leaves (100 - p) pixels
    maps = torch.rand(4, 10, 10, generator=torch.Generator().manual_seed(8))
    # pytorch-grad-cam's percentile p keeps p% of the pixels (MoRF: the least relevant,
    # LeRF: the most relevant) and imputes the rest: our fraction removed is 1 - p / 100
    for order, metric, percentile in (
        ("morf", ROADMostRelevantFirst, 70),
        ("lerf", ROADLeastRelevantFirst, 40),
    ):
        ours = metrics.road(
            model,
            images,
            maps,
            order=order,
            fractions=(1 - percentile / 100,),
            noise=0.0,
        )
        before = model(images).softmax(1).gather(1, ours.classes[:, None])[:, 0]
        theirs = metric(percentile)
        theirs.perturbation.imputer.noise = 0.0
        targets = [ClassifierOutputSoftmaxTarget(int(c)) for c in ours.classes]
        change = theirs(
            images, maps.numpy(), targets, model
        )  # P_c after minus P_c before
        np.testing.assert_allclose(
            (ours.scores[:, 0] - before).detach().numpy(), change.ravel(), atol=1e-5
        )


def test_a_deletion_curve_runs_as_batched_forwards() -> None:
    """B = 5 images x (S + 1) = 9 steps = 45 perturbed images: 1 forward for P_c, then
    ceil(45 / 20) = 3, not 45."""
    model = make_gapnet(1)
    images = random_images(2, batch=5, size=12)
    sizes = []
    handle = model.register_forward_pre_hook(
        lambda _m, inputs: sizes.append(inputs[0].shape[0])
    )
    metrics.perturbation_curve(
        model, images, torch.rand(5, 12, 12), steps=8, max_batch=20
    )
    handle.remove()
    assert sizes == [5, 20, 20, 5]
