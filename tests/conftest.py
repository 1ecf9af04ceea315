"""Shared fixtures: devices, tiny seeded networks, the pretrained model (loaded once)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")),
]


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    return torch.device(request.param)


class GapNet(nn.Module):
    """conv features -> global average pooling -> linear: the architecture CAM was made for."""

    def __init__(self, channels: int = 8, num_classes: int = 5, inplace: bool = False) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU(inplace=inplace),
            nn.Conv2d(channels, channels, 3, stride=2, padding=1), nn.ReLU(inplace=inplace),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


def make_gapnet(seed: int, device: torch.device | str = "cpu", **kwargs) -> GapNet:
    torch.manual_seed(seed)
    net = GapNet(**kwargs)
    # Non-trivial batch-norm statistics, so eval mode differs from train mode.
    net.features[1].running_mean.uniform_(-0.5, 0.5)
    net.features[1].running_var.uniform_(0.5, 2.0)
    return net.to(device).eval()


def random_images(seed: int, batch: int = 3, size: int = 16, device: torch.device | str = "cpu") -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, size, size, generator=generator).to(device)


def hook_count(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in model.modules()
    )


@pytest.fixture(scope="session")
def lite0():
    from camlib.models import efficientnet_lite0

    return efficientnet_lite0()


@pytest.fixture(scope="session")
def photos():
    from camlib.data import photo_batch

    return photo_batch()
