"""Tiny networks and model snapshots shared by the tests (imported as ``helpers``)."""

from __future__ import annotations

import torch
from torch import nn


class GapNet(nn.Module):
    """conv features -> global average pooling -> linear: the architecture CAM was made
    for."""

    def __init__(
        self, channels: int = 8, num_classes: int = 5, inplace: bool = False
    ) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, channels, 3, padding=1),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=inplace),
            nn.Conv2d(channels, channels, 3, stride=2, padding=1),
            nn.ReLU(inplace=inplace),
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


def random_images(
    seed: int, batch: int = 3, size: int = 16, device: torch.device | str = "cpu"
) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, size, size, generator=generator).to(device)


def hook_count(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in model.modules()
    )


def snapshot(model: torch.nn.Module) -> dict:
    return {
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [
            None if p.grad is None else p.grad.clone() for p in model.parameters()
        ],
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "hooks": hook_count(model),
    }


def assert_unchanged(model: torch.nn.Module, before: dict) -> None:
    after = snapshot(model)
    assert after["training"] == before["training"]
    assert after["requires_grad"] == before["requires_grad"]
    assert after["hooks"] == before["hooks"] == 0
    for a, b in zip(after["grads"], before["grads"]):
        assert (a is None and b is None) or torch.equal(a, b)
    for key, value in before["state"].items():
        assert torch.equal(after["state"][key], value), key


class TwoByTwo(nn.Module):
    """The input itself is the feature map (2 channels, 2x2), then GAP and a hand-set
    linear layer."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Identity()
        self.fc = nn.Linear(2, 2)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[1.0, 2.0], [0.0, -1.0]]))
            self.fc.bias.copy_(torch.tensor([0.5, -0.25]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(-2, -1)))


# explain's bad-input cases, shared by the bad-input and pipeline tests
GOOD = random_images(0, batch=2)

CASES = [
    # (description, kwargs for explain, error type, pattern that the message must
    # contain)
    (
        "not a tensor",
        dict(images=GOOD.numpy()),
        TypeError,
        r"expected a torch\.Tensor.*got ndarray",
    ),
    (
        "3-D images",
        dict(images=GOOD[0]),
        ValueError,
        r"expected a 4-D tensor.*got shape \(3, 16, 16\)",
    ),
    (
        "wrong channels",
        dict(images=GOOD[:, :1]),
        ValueError,
        r"expects 3 channels, got 1",
    ),
    (
        "integer images",
        dict(images=(GOOD * 50).to(torch.uint8)),
        TypeError,
        r"floating-point.*got dtype torch\.uint8",
    ),
    (
        "NaN",
        dict(images=GOOD.clone().index_fill_(0, torch.tensor([1]), float("nan"))),
        ValueError,
        r"finite.*NaN or Inf",
    ),
    (
        "Inf",
        dict(images=torch.full_like(GOOD, float("inf"))),
        ValueError,
        r"finite.*NaN or Inf",
    ),
    (
        "empty batch",
        dict(images=GOOD[:0]),
        ValueError,
        r"at least one image.*\(0, 3, 16, 16\)",
    ),
    ("class too large", dict(classes=5), ValueError, r"indices in \[0, 4\], got \[5\]"),
    (
        "negative class",
        dict(classes=torch.tensor([0, -1])),
        ValueError,
        r"indices in \[0, 4\], got \[-1\]",
    ),
    (
        "rows do not match batch",
        dict(classes=torch.tensor([1, 2, 3])),
        ValueError,
        r"one row per image.*\[2\].*got shape \(3,\)",
    ),
    (
        "float classes",
        dict(classes=torch.tensor([1.0, 2.0])),
        TypeError,
        r"integer tensor, got dtype torch\.float32",
    ),
    (
        "unknown layer",
        dict(layers=["feature"]),
        ValueError,
        r"no module named 'feature'.*did you mean.*'features'",
    ),
    (
        "layer without a feature map",
        dict(layers="fc"),
        ValueError,
        r"layer 'fc': its output \(2, 5\) has no spatial axes",
    ),
    (
        "unknown method",
        dict(method="scorecam2"),
        ValueError,
        r"method: expected one of \['cam', 'gradcam'.*got 'scorecam2'",
    ),
    ("topk zero", dict(topk=0), ValueError, r"topk: expected a positive int, got 0"),
    ("topk too large", dict(topk=6), ValueError, r"at most 5.*got 6"),
    (
        "topk not an int",
        dict(topk=2.0),
        TypeError,
        r"topk: expected a positive int, got float",
    ),
    (
        "classes with topk",
        dict(classes=1, topk=2),
        ValueError,
        r"classes and topk: pass one",
    ),
    (
        "method not a str",
        dict(method=3),
        TypeError,
        r"method: expected a method name \(str\)",
    ),
    (
        "batch_size not an int",
        dict(batch_size="8"),
        TypeError,
        r"batch_size: expected None",
    ),
    ("layers not a name", dict(layers=3), TypeError, r"layers: expected a module name"),
    (
        "a module of another model",
        dict(layers=nn.Conv2d(3, 3, 1)),
        ValueError,
        r"Conv2d given is not a submodule of this model",
    ),
]
