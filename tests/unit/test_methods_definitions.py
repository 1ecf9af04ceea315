"""The CAM family against its definitions, on hand-built nets whose answers are worked
out by hand."""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
import torch
from torch import nn

import camlib
from camlib.methods import first_component
from helpers import TwoByTwo, make_gapnet, random_images

explain_module = importlib.import_module(
    "camlib.explain"
)  # the module, not the function

F0 = [[1.0, 2.0], [3.0, 4.0]]  # mean 2.5, sum 10
F1 = [[0.0, 2.0], [0.0, 0.0]]  # mean 0.5, sum 2
BOTH = torch.tensor([[0, 1]])


def two_by_two(method: str, f1=F1) -> torch.Tensor:
    """Raw maps [2, 2, 2] (classes 0 and 1) of TwoByTwo, whose features are the input
    itself."""
    images = torch.tensor([[F0, f1]])
    return camlib.explain(TwoByTwo().eval(), images, method=method, classes=BOTH).raw[
        "features"
    ][0]


# TwoByTwo: w^0 = (1, 2), b_0 = 0.5; w^1 = (0, -1), b_1 = -0.25; h w = 4, so d S_c / d
# f_k = w_ck / 4.
f0, f1 = torch.tensor(F0), torch.tensor(F1)


def test_hirescam_by_hand() -> None:
    # sum_k g_k f_k: class 0: f0/4 + 2 f1/4; class 1: -f1/4
    expected = torch.stack([f0 / 4 + f1 / 2, -f1 / 4])
    torch.testing.assert_close(two_by_two("hirescam"), expected)


def test_xgradcam_by_hand() -> None:
    # w_k = sum(f g) / sum(f) = g_k (g is constant): class 0 (1/4, 1/2); class 1 (0,
    # -1/4)
    torch.testing.assert_close(
        two_by_two("xgradcam"), torch.stack([f0 / 4 + f1 / 2, -f1 / 4])
    )
    # a channel that sums to zero gets weight 0 (0/0), whatever its gradient
    zero_sum = torch.tensor([[0.0, 1.0], [0.0, -1.0]])
    torch.testing.assert_close(
        two_by_two("xgradcam", zero_sum.tolist()), torch.stack([f0 / 4, 0 * f0])
    )


def test_layercam_by_hand() -> None:
    # sum_k relu(g_k) f_k: class 0: f0/4 + f1/2; class 1: relu(-1/4) = 0, so nothing
    torch.testing.assert_close(
        two_by_two("layercam"), torch.stack([f0 / 4 + f1 / 2, 0 * f0])
    )


def test_gradcampp_by_hand() -> None:
    # alpha = g^2 / (2 g^2 + sum(f) g^3) = 1 / (2 + sum(f) g) for g != 0; w = 4 alpha
    # relu(g) class 0, channel 0: g = 1/4, sum 10: alpha = 1/4.5, w = 4 * (1/4) / 4.5 =
    # 2/9 class 0, channel 1: g = 1/2, sum 2: alpha = 1/3, w = 4 * (1/2) / 3 = 2/3
    # class 1: channel 0 has g = 0 (alpha 0), channel 1 relu(-1/4) = 0: an all-zero map
    torch.testing.assert_close(
        two_by_two("gradcampp"), torch.stack([2 / 9 * f0 + 2 / 3 * f1, 0 * f0])
    )


def test_ablationcam_by_hand() -> None:
    # S_0 = 2.5 + 2 * 0.5 + 0.5 = 4; zeroing f0: 1.5, zeroing f1: 3 -> w = (2.5/4, 1/4)
    # S_1 = -0.5 - 0.25 = -0.75; zeroing f0: no change (w 0), f1: -0.25 -> w =
    # (-0.5)/(-0.75) = 2/3
    torch.testing.assert_close(
        two_by_two("ablationcam"), torch.stack([0.625 * f0 + 0.25 * f1, 2 / 3 * f1])
    )


def test_scorecam_by_hand() -> None:
    # masks: minmax(f0) = [[0, 1/3], [2/3, 1]], minmax(f1) = [[0, 1], [0, 0]]
    h0 = torch.tensor([[0.0, 1 / 3], [2 / 3, 1.0]])
    h1 = torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    # logits of X * H: S_0 = mean(f0 H) + 2 mean(f1 H) + 0.5 ; S_1 = -mean(f1 H) - 0.25
    # X * h0: f0 h0 = [[0, 2/3], [2, 4]] (mean 5/3), f1 h0 = [[0, 2/3], [0, 0]] (mean
    # 1/6) X * h1: f0 h1 = [[0, 2], [0, 0]] (mean 1/2),   f1 h1 = [[0, 2], [0, 0]] (mean
    # 1/2)
    s0 = torch.tensor([5 / 3 + 2 / 6 + 0.5, 0.5 + 1.0 + 0.5])
    s1 = torch.tensor([-1 / 6 - 0.25, -0.5 - 0.25])
    w0, w1 = s0.softmax(0), s1.softmax(0)
    expected = torch.stack([w0[0] * f0 + w0[1] * f1, w1[0] * f0 + w1[1] * f1])
    torch.testing.assert_close(two_by_two("scorecam"), expected)
    assert (h0 * 3).round().tolist() == [
        [0, 1],
        [2, 3],
    ] and h1.sum() == 1  # the masks as stated


def test_eigencam_of_a_rank_one_layer_by_hand() -> None:
    # f_k = a_k P: X = P a^T, so v_1 = +-a/|a| and X v_1 = +-|a| P; sum_k f_k = (sum a)
    # P fixes the sign
    p = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
    for a, sign in (([2.0, 1.0], 1.0), ([-2.0, -1.0], -1.0)):
        images = torch.stack([a[0] * p, a[1] * p])[None]
        raw = camlib.explain(
            TwoByTwo().eval(), images, method="eigencam", classes=BOTH
        ).raw["features"][0]
        expected = sign * math.sqrt(5.0) * p
        torch.testing.assert_close(
            raw, torch.stack([expected, expected]), rtol=1e-5, atol=1e-5
        )


def test_eigencam_is_the_uncentred_first_component_numpy_oracle() -> None:
    activations = torch.randn(
        3, 6, 4, 5, generator=torch.Generator().manual_seed(0)
    ).relu()
    got = first_component(activations)
    for i in range(3):
        x = activations[i].reshape(6, -1).T.double().numpy()
        _, _, vt = np.linalg.svd(x, full_matrices=False)
        expected = torch.from_numpy(x @ vt[0]).float().reshape(4, 5)
        # the SVD's sign is arbitrary: compare up to sign
        sign = 1.0 if float((expected * got[i]).sum()) >= 0 else -1.0
        torch.testing.assert_close(got[i], sign * expected, rtol=1e-4, atol=1e-5)


class SkipAcross(nn.Module):
    """A skip connection from below the target layer joins above it: the tail cannot run
    alone."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.stem = nn.Conv2d(3, 6, 3, padding=1)
        self.target = nn.Conv2d(6, 6, 3, padding=1)
        self.fc = nn.Linear(6, 4)

    def forward(self, x):
        s = self.stem(x).relu()
        return self.fc((self.target(s) + s).mean(dim=(-2, -1)))


def ablation_by_reruns(
    model: nn.Module, layer: str, images: torch.Tensor, classes: torch.Tensor
) -> torch.Tensor:
    """Ablation-CAM from the definition: one full forward per (image, channel), the
    channel zeroed."""
    module = dict(model.named_modules())[layer]
    kept = {}
    handle = module.register_forward_hook(
        lambda m, i, o: kept.__setitem__("f", o.detach().clone())
    )
    with torch.no_grad():
        logits = model(images)
    handle.remove()
    f = kept["f"]
    maps = []
    for b in range(images.shape[0]):
        s = logits[b, classes[b]]
        weights = []
        for k in range(f.shape[1]):

            def zero(m, i, o, k=k):
                o = o.clone()
                o[:, k] = 0
                return o

            handle = module.register_forward_hook(zero)
            with torch.no_grad():
                ablated = model(images[b : b + 1])[0, classes[b]]
            handle.remove()
            weights.append((s - ablated) / s)
        maps.append(torch.einsum("khw,kt->thw", f[b], torch.stack(weights)))
    return torch.stack(maps)


@pytest.mark.parametrize("batch", [1, 3])
def test_ablation_with_a_skip_across_the_layer_falls_back_to_full_reruns(
    batch: int,
) -> None:
    model = SkipAcross().eval()
    images = random_images(1, batch=batch, size=8)
    classes = torch.tensor([[0, 2]] * batch)
    explainer = camlib.Explainer(model, method="ablationcam", layers="target")
    capture = explainer.capture(images)
    rows_seen = []
    model.stem.register_forward_pre_hook(lambda m, i: rows_seen.append(i[0].shape[0]))
    got = explainer.raw_maps(capture, "target", classes)
    # the tail-only check (empty batch below the layer) fails; one whole pass of the
    # images checks the full reruns; then whole-network reruns, one row per ablated
    # copy, on its image
    assert rows_seen[:2] == [0, batch] and len(rows_seen) > 2
    assert all(rows <= 64 for rows in rows_seen[2:])
    assert sum(rows_seen[2:]) == batch * 6  # 6 channels, each ablated once per image
    torch.testing.assert_close(
        got, ablation_by_reruns(model, "target", images, classes), rtol=1e-4, atol=1e-5
    )


def test_ablation_runs_the_layers_below_once() -> None:
    net = make_gapnet(11)
    rows_seen = []
    net.features[0].register_forward_pre_hook(
        lambda m, i: rows_seen.append(i[0].shape[0])
    )
    images = random_images(11, batch=3)
    exp = camlib.explain(
        net, images, method="ablationcam", layers="features.2", topk=2, batch_size=3
    )
    # one capture pass with the 3 images, one check on an empty batch, then 8 channels /
    # 3 per
    # pass = 3 passes on empty batches
    assert rows_seen == [3, 0, 0, 0, 0]
    classes = exp.classes
    expected = ablation_by_reruns(net, "features.2", images, classes)
    torch.testing.assert_close(exp.raw["features.2"], expected, rtol=1e-4, atol=1e-5)


def test_ablation_at_a_gap_layer_is_in_closed_form_and_equals_the_reruns() -> None:
    """Where the layer feeds GAP + linear, zeroing f_k lowers S_c by w_k^c mean(f_k):
    camlib computes the ablations so, without running the tail; the maps equal
    whole-network reruns with each channel zeroed by a hook (the definition), also for a
    ReLU between the layer and the pooling (features.3, whose output the ReLU at
    features.4 clips)."""
    net = make_gapnet(12)
    images = random_images(12, batch=2)
    for layer in ("features.4", "features.3"):
        rows_seen = []
        handle = net.fc.register_forward_pre_hook(
            lambda m, i: rows_seen.append(i[0].shape[0])
        )
        exp = camlib.explain(net, images, method="ablationcam", layers=layer, topk=2)
        handle.remove()
        assert rows_seen == [2], rows_seen  # the capture pass only
        expected = ablation_by_reruns(net, layer, images, exp.classes)
        torch.testing.assert_close(exp.raw[layer], expected, rtol=1e-4, atol=1e-5)


def test_ablation_skips_all_zero_channels_exactly(monkeypatch) -> None:
    monkeypatch.setattr(
        explain_module, "find_linear_head", no_linear_head
    )  # the reruns
    net = make_gapnet(12)
    images = random_images(12, batch=2)
    layer = "features.4"  # post-ReLU: some channels of a random net are all zero
    f = net.features(images).detach()
    dead = f.flatten(2).amax(2) == 0  # [B, K]
    assert 0 < int(dead.sum()) < dead.numel(), "the test needs some dead channels"
    rows_seen = []
    net.fc.register_forward_pre_hook(lambda m, i: rows_seen.append(i[0].shape[0]))
    exp = camlib.explain(net, images, method="ablationcam", layers=layer, topk=2)
    # capture (2 images), the check (2 rows), then one row per live (image, channel)
    # pair
    assert rows_seen[:2] == [2, 2] and sum(rows_seen[2:]) == int((~dead).sum())
    expected = ablation_by_reruns(net, layer, images, exp.classes)
    torch.testing.assert_close(exp.raw[layer], expected, rtol=1e-4, atol=1e-5)


def test_scorecam_scores_a_shared_all_zero_mask_once() -> None:
    net = make_gapnet(12)
    images = random_images(12, batch=2)
    layer = "features.4"  # post-ReLU: some channels of a random net are all zero
    rows_seen = []
    net.register_forward_pre_hook(lambda m, i: rows_seen.append(i[0].shape[0]))
    exp = camlib.explain(
        net, images, method="scorecam", layers=layer, topk=2, batch_size=5
    )
    f = dict(net.named_modules())[layer](net.features[:4](images)).detach()
    constant = f.flatten(2).amax(2) == f.flatten(2).amin(2)
    assert 0 < int(constant.sum()) < constant.numel(), (
        "the test needs some dead channels"
    )
    needed = int((~constant).sum())
    assert rows_seen == [2, 1] + [5] * (needed // 5) + (
        [needed % 5] if needed % 5 else []
    )
    # the definition, every channel scored on its own masked image (the zero image
    # included)
    scores = torch.empty(2, f.shape[1], 2)
    with torch.no_grad():
        for b in range(2):
            for k in range(f.shape[1]):
                up = torch.nn.functional.interpolate(
                    f[b : b + 1, k : k + 1], size=(16, 16), mode="bilinear"
                )
                spread = up.max() - up.min()
                mask = (up - up.min()) / spread if spread > 0 else torch.zeros_like(up)
                scores[b, k] = net(images[b : b + 1] * mask)[0, exp.classes[b]]
    expected = torch.einsum("bkhw,bkt->bthw", f, scores.softmax(dim=1))
    torch.testing.assert_close(exp.raw[layer], expected, rtol=1e-4, atol=1e-6)


def no_linear_head(*args, **kwargs):
    """Stands in for camlib.explain.find_linear_head: no layer feeds GAP + linear, so
    Ablation-CAM runs the network's tail on every ablated copy instead of its closed
    form."""
    raise ValueError("no GAP + linear head (test)")
