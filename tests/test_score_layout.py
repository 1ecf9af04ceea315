"""Score-CAM's layout trial: both layouts tried on the first chunks, the faster kept, the same
maps either way, and a model that cannot take channels-last input still served."""
from __future__ import annotations

import time

import pytest
import torch
from torch import nn

import camlib
from camlib import perturbation
from conftest import make_gapnet, random_images

CL = torch.channels_last


def is_channels_last(x: torch.Tensor) -> bool:
    # a [n, 3, H, W] image batch, H, W > 1: in the channels-last layout the channels are
    # adjacent in memory, in the usual one the pixels of a channel are
    return x.stride(1) == 1 and x.stride(-1) == x.shape[1]


class Recorder(nn.Module):
    """Wraps a network; records each input's layout (True: channels-last) and sleeps
    ``delay[layout]`` seconds per pass, or 0.03 s in the ``slow`` layout (far slower than the
    other: the tiny network itself takes about a millisecond)."""

    def __init__(self, net: nn.Module, slow: bool | None = None,
                 delay: dict[bool, float] | None = None) -> None:
        super().__init__()
        self.net, self.seen = net, []
        self.delay = delay or ({} if slow is None else {slow: 0.03})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(is_channels_last(x))
        time.sleep(self.delay.get(self.seen[-1], 0.0))
        return self.net(x)


class ViewHead(nn.Module):
    """conv -> view -> linear: ``view`` fails on a channels-last feature map."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(6 * 16 * 16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        return self.fc(f.view(f.shape[0], -1))


def chunks_of_one(model: nn.Module, images: torch.Tensor, layer: str) -> int:
    """Masked passes at batch size 1: one per (image, channel) with a non-constant channel."""
    f = camlib.Explainer(model, "scorecam", layer).capture(images).activations[layer]
    return int((f.flatten(2).amax(2) > f.flatten(2).amin(2)).sum())


def scorecam(model: nn.Module, images: torch.Tensor, trial: bool, layer: str) -> torch.Tensor:
    old = perturbation.LAYOUT_TRIAL
    perturbation.LAYOUT_TRIAL = trial
    try:
        return camlib.explain(model, images, method="scorecam", layers=layer, topk=2,
                              batch_size=1).raw[layer]
    finally:
        perturbation.LAYOUT_TRIAL = old


def test_the_channels_last_test_itself() -> None:
    x = torch.randn(4, 3, 5, 5)
    assert not is_channels_last(x) and is_channels_last(x.contiguous(memory_format=CL))


@pytest.mark.parametrize("slow", [True, False])
def test_a_clear_gap_is_settled_by_one_pair_and_the_maps_do_not_change(slow: bool) -> None:
    model = Recorder(make_gapnet(40), slow=slow)  # 8 channels x 3 images: up to 24 chunks
    images = random_images(40)
    usual = scorecam(model, images, trial=False, layer="net.features")
    assert not any(model.seen)
    model.seen.clear()
    tried = scorecam(model, images, trial=True, layer="net.features")
    masked = model.seen[1:]  # the first pass is the capture pass, on the images as given
    trials = perturbation.LayoutTrial.TRIALS
    assert len(masked) == chunks_of_one(model, images, "net.features") >= 2 * trials
    # about 1 ms against 31 ms: far under 0.8 x, so the first pair decides
    assert masked[:2] == [False, True]
    assert set(masked[2:]) == {not slow}  # the layout that was not made slow
    torch.testing.assert_close(tried, usual, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("faster", [True, False])
def test_a_narrow_gap_takes_the_whole_trial(faster: bool) -> None:
    # one layout 10% faster: above 0.8 x, so all six trial chunks run; above 3%, so it wins
    model = Recorder(make_gapnet(46), delay={faster: 0.09, not faster: 0.1})
    images = random_images(46)
    scorecam(model, images, trial=True, layer="net.features")
    seen = list(model.seen)
    # the capture pass, then one pass on an all-zero image if a channel is constant
    masked = seen[len(seen) - chunks_of_one(model, images, "net.features"):]
    trials = perturbation.LayoutTrial.TRIALS
    assert len(masked) >= 2 * trials
    assert masked[:trials] == [False, True] * (trials // 2)
    assert set(masked[trials:]) == {faster}


def test_no_trial_for_few_chunks() -> None:
    model = Recorder(make_gapnet(41))
    images = random_images(41, batch=1)  # 8 channels: at most 8 chunks, fewer than 2 x 6
    assert perturbation.LayoutTrial.TRIALS == 6
    scorecam(model, images, trial=True, layer="net.features")
    assert len(model.seen) == 1 + chunks_of_one(model, images, "net.features")
    assert not any(model.seen)


def test_a_model_that_fails_on_channels_last_falls_back_to_the_usual_layout() -> None:
    model = ViewHead().eval()
    images = random_images(42)
    with pytest.raises(RuntimeError, match="view"):
        model(images.contiguous(memory_format=CL))
    recorder = Recorder(model)
    tried = scorecam(recorder, images, trial=True, layer="net.features")
    masked = recorder.seen[1:]
    # chunk 0 usual, chunk 1 fails in channels-last and runs again in the usual layout, and
    # every later chunk runs in the usual layout
    assert masked[:3] == [False, True, False] and not any(masked[3:])
    assert len(masked) == chunks_of_one(model, images, "features") + 1 >= 12 + 1
    torch.testing.assert_close(tried, scorecam(model, images, trial=False, layer="features"),
                               rtol=1e-5, atol=1e-6)


def test_the_choice_is_remembered_per_model_size_and_batch() -> None:
    model = Recorder(make_gapnet(43), slow=False)  # the usual layout made slow
    images = random_images(43)
    first = scorecam(model, images, trial=True, layer="net.features")
    assert model.seen[1:3] == [False, True] and all(model.seen[3:])  # a trial, one pair
    model.seen.clear()
    again = scorecam(model, images[:1], trial=True, layer="net.features")  # fewer chunks
    assert model.seen[0] is False and all(model.seen[1:])  # no trial: remembered
    torch.testing.assert_close(again, first[:1], rtol=1e-5, atol=1e-6)
    model.seen.clear()
    scorecam(model, random_images(44, size=24), trial=True, layer="net.features")
    assert model.seen[1:3] == [False, True]  # a new size: a new trial
    model.seen.clear()
    scorecam(model, images, trial=False, layer="net.features")  # switched off: usual layout
    assert not any(model.seen)
    other = Recorder(make_gapnet(43), slow=False)  # another model: its own trial
    scorecam(other, images, trial=True, layer="net.features")
    assert other.seen[1:3] == [False, True]  # another model: its own trial


def test_a_failing_model_is_remembered_as_usual_only() -> None:
    recorder = Recorder(ViewHead().eval())
    images = random_images(45)
    scorecam(recorder, images, trial=True, layer="net.features")
    recorder.seen.clear()
    scorecam(recorder, images, trial=True, layer="net.features")
    assert not any(recorder.seen)  # not even one channels-last attempt


class Sizes(nn.Module):
    """conv (20 channels) -> GAP -> linear; records the number of images in each pass."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.features = nn.Conv2d(3, 20, 3, padding=1)
        self.fc = nn.Linear(20, 4)
        self.sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(x.shape[0])
        return self.fc(self.features(x).mean((2, 3)))


def test_default_batch_size_is_8_on_the_cpu_and_32_elsewhere(device) -> None:
    # 2 images x 20 channels (a conv of random images: no constant channel) = 40 masked images
    model = Sizes().to(device).eval()
    camlib.explain(model, random_images(6, batch=2, device=device), method="scorecam",
                   layers="features")
    masked = model.sizes[1:]  # after the plain forward on the 2 images
    assert masked == ([8] * 5 if device.type == "cpu" else [32, 8])
    model.sizes.clear()
    camlib.explain(model, random_images(6, batch=2, device=device), method="scorecam",
                   layers="features", batch_size=16)
    assert model.sizes[1:] == [16, 16, 8]
