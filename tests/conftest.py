"""Shared fixtures: devices, tiny seeded networks, the pretrained model (loaded
once)."""

from __future__ import annotations

import pytest
import torch

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(
            not torch.cuda.is_available(), reason="no CUDA device"
        ),
    ),
]


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    return torch.device(request.param)


@pytest.fixture(scope="session")
def lite0():
    from camlib.models import efficientnet_lite0

    return efficientnet_lite0()


@pytest.fixture(scope="session")
def photos():
    from cambook.data import photo_batch

    return photo_batch()
