"""The layer to explain in each torchvision family, and why (:func:`default_layer`)."""

from __future__ import annotations

import weakref

from torch import Tensor, nn

from .capture import find_feature_layer

# torchvision class name -> its layer, or a function of the model giving it (reasons
# below)
_FAMILIES = {
    "ResNet": "layer4",
    "DenseNet": "features",
    "MobileNetV2": "features",
    "MobileNetV3": "features",
    "EfficientNet": "features",
    "RegNet": "trunk_output",
    "ConvNeXt": "features",
    "VisionTransformer": lambda m: f"encoder.layers.{_last(m.encoder.layers)}.ln_1",
    "SwinTransformer": "norm",
    "MaxVit": lambda m: f"blocks.{len(m.blocks) - 1}",
}


def _last(layers: nn.Module) -> str:
    return list(dict(layers.named_children()))[-1]


def default_layer(model: nn.Module) -> str:
    """The layer the literature explains for a torchvision classifier, by its family.

    - ResNet (and ResNeXt, Wide ResNet): ``layer4``, the last residual stage, which the
      global average pooling reads.
    - DenseNet: ``features``, the last dense block after its batch norm (the head
      applies a ReLU, then the pooling).
    - MobileNet v2 and v3, EfficientNet (v1 and v2): ``features``, the last 1 x 1
      convolution's map before the pooling.
    - RegNet: ``trunk_output``, the last stage before the pooling.
    - ConvNeXt: ``features``, the last stage's ``[B, K, h, w]`` output before the
      pooling.
    - VisionTransformer: ``encoder.layers.encoder_layer_{L-1}.ln_1``, the last block's
      first norm, tokens ``[B, 1 + h w, K]``: the class token that feeds the head meets
      the patch tokens only in that block's attention, so at any later layer the class
      score's gradient is 0 on every patch token.
    - SwinTransformer (v1 and v2): ``norm``, the final LayerNorm, channels-last
      ``[B, h, w, K]``, which the average pooling and one linear layer read (so CAM
      applies); pytorch-grad-cam's guide uses the last block's ``norm2``
      (``features.7.1.norm2``).
    - MaxVit: ``blocks.{last}``, the last stage's ``[B, K, h, w]`` output before the
      pooling.

    Any other model: a ValueError that lists candidate layers (pass one as ``layers=``).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"model: expected a torch.nn.Module, got {type(model).__name__}"
        )
    for cls in type(model).__mro__:
        if cls.__name__ in _FAMILIES and cls.__module__.startswith("torchvision."):
            layer = _FAMILIES[cls.__name__]
            return layer(model) if callable(layer) else layer
    raise ValueError(
        f"default_layer knows torchvision's {', '.join(_FAMILIES)}; for a "
        f"{type(model).__name__}, pass layers=..., e.g. one of {candidates(model)} (a "
        "layer whose output is a map [B, K, h, w], [B, h, w, K] or tokens [B, L, K])"
    )


def candidates(model: nn.Module, count: int = 6) -> list[str]:
    """The last ``count`` modules that may output a feature map: convolutions, norms and
    the children of containers (blocks), in the order the model lists them."""
    kinds = (nn.Conv2d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)
    names = []
    for name, module in model.named_modules():
        parent = name.rpartition(".")[0]
        if name and (
            isinstance(module, kinds)
            or "." not in name
            or parent.endswith(("layers", "blocks", "features"))
        ):
            if not isinstance(
                module, (nn.Linear, nn.Flatten, nn.Dropout, nn.AdaptiveAvgPool2d)
            ):
                names.append(name)
    return names[-count:]


_DEFAULT_LAYERS: "weakref.WeakKeyDictionary[nn.Module, str]" = (
    weakref.WeakKeyDictionary()
)


def layer_or_probe(model: nn.Module, images: Tensor) -> str:
    """:func:`default_layer` for torchvision's families; for any other model the feature
    map feeding the global pooling, found once per model by a probe forward pass."""
    if model not in _DEFAULT_LAYERS:
        try:
            _DEFAULT_LAYERS[model] = default_layer(model)
        except ValueError:
            _DEFAULT_LAYERS[model] = find_feature_layer(model, images)
    return _DEFAULT_LAYERS[model]
