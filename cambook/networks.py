"""The small CAM-ready classifiers of Chapters 4 and 5, and several of them as one
network."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


def channels_last(images: Tensor) -> Tensor:
    """Channels-last copies: the layout the CPU and GPU convolutions of these networks
    are fastest with (their parameters are stored so too)."""
    return images.contiguous(memory_format=torch.channels_last)


# --- the classifiers ------------------------------------------------------------------


class SmallCNN(nn.Module):
    """Four 3x3 convolutions, global average pooling, one linear layer: CAM applies as
    is."""

    def __init__(
        self, num_classes: int, widths: Sequence[int] = (16, 24, 32, 32)
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for index, width in enumerate(widths):
            stride = 2 if index == 1 else 1
            layers += [
                nn.Conv2d(channels, width, 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
            channels = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, images: Tensor) -> Tensor:
        return self.fc(self.pool(self.features(images)).flatten(1))


class GroupedCNN(nn.Module):
    """G independent :class:`SmallCNN` s run as one network: grouped convolutions (group
    g reads input channels 3g..3g+2 and writes only its own feature maps), per-group
    linear layers. Input ``[B, 3G, H, W]``, logits ``[B, G, classes]``. Trained with the
    sum of the groups' losses, each member gets exactly the gradients it would get
    alone, so this trains G networks on G inputs for the price of one wider pass."""

    def __init__(self, members: Sequence[SmallCNN]) -> None:
        super().__init__()
        self.groups = len(members)
        layers: list[nn.Module] = []
        for parts in zip(*(member.features for member in members)):
            first = parts[0]
            if isinstance(first, nn.Conv2d):
                layer = nn.Conv2d(
                    first.in_channels * self.groups,
                    first.out_channels * self.groups,
                    3,
                    stride=first.stride,
                    padding=1,
                    groups=self.groups,
                    bias=False,
                )
            elif isinstance(first, nn.BatchNorm2d):
                layer = nn.BatchNorm2d(first.num_features * self.groups)
            else:
                layers.append(nn.ReLU(inplace=True))
                continue
            with torch.no_grad():
                for name, value in layer.named_parameters():
                    value.copy_(
                        torch.cat(
                            [dict(part.named_parameters())[name] for part in parts]
                        )
                    )
                for name, value in layer.named_buffers():
                    if value.ndim:
                        value.copy_(
                            torch.cat(
                                [dict(part.named_buffers())[name] for part in parts]
                            )
                        )
            layers.append(layer)
        self.features = nn.Sequential(*layers)
        self.weight = nn.Parameter(
            torch.stack([member.fc.weight.detach() for member in members])
        )  # [G, C, K]
        self.bias = nn.Parameter(
            torch.stack([member.fc.bias.detach() for member in members])
        )  # [G, C]

    def forward(self, images: Tensor) -> Tensor:
        pooled = self.features(images).mean(dim=(2, 3))  # [B, G * K]
        pooled = pooled.view(pooled.shape[0], self.groups, -1)
        return torch.einsum("bgk,gck->bgc", pooled, self.weight) + self.bias

    def member(self, group: int) -> SmallCNN:
        """Group ``group`` as a stand-alone :class:`SmallCNN` (a copy), e.g. for CAM."""
        widths = [
            m.out_channels // self.groups
            for m in self.features
            if isinstance(m, nn.Conv2d)
        ]
        net = SmallCNN(self.weight.shape[1], widths).to(self.weight.device)
        parts = [m for m in self.features if not isinstance(m, nn.ReLU)]
        mine = [m for m in net.features if not isinstance(m, nn.ReLU)]
        with torch.no_grad():
            for grouped, single in zip(parts, mine):
                for (_, value), (_, target) in zip(
                    grouped.named_parameters(), single.named_parameters()
                ):
                    target.copy_(value.chunk(self.groups)[group])
                for (_, value), (_, target) in zip(
                    grouped.named_buffers(), single.named_buffers()
                ):
                    target.copy_(
                        value.chunk(self.groups)[group] if value.ndim else value
                    )
            net.fc.weight.copy_(self.weight[group])
            net.fc.bias.copy_(self.bias[group])
        return net.eval()
