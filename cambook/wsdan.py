"""WS-DAN-style training (Hu et al. 2019), the single-network variant of Chapter 4: at
every training step the network's own current CAM of the true class picks a crop (and,
optionally, a region to erase), each adding its own loss term.
:func:`cambook.enhance.run_experiment` runs it beside the two-stage classifier."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .crops import _crop, square_windows
from .networks import SmallCNN, channels_last
from .settings import Config, Forward
from camlib.postprocess import mask_to_box, threshold_mask, to_image_maps


def attention_windows(maps: Tensor, config: Config) -> Tensor:
    """WS-DAN's crop: the box around every pixel above ``attention_ratio`` of the
    maximum (no connected components), made square with the margin."""
    scale = config.image_size / maps.shape[-1]
    boxes = mask_to_box(threshold_mask(maps, config.attention_ratio)).float() * scale
    return square_windows(boxes, config.image_size, config.margin, config.min_side)


def step_cam(model: SmallCNN, features: Tensor, classes: Tensor, size: int) -> Tensor:
    """CAM of ``classes`` [B] from features [B, K, h, w] the training step has already
    computed (no second forward pass), as [B, size, size] maps; equal to
    :func:`cambook.enhance.cam_maps` in eval mode."""
    weights = model.fc.weight.detach()[classes][:, None]  # [B, T=1, K]
    raw = torch.einsum("bkhw,btk->bthw", features.detach(), weights)
    return to_image_maps(raw, (size, size))[:, 0]


def attention_forward(full: Tensor, config: Config, drop: bool) -> Forward:
    """WS-DAN-style training step: the global view, the crop around the network's own
    current CAM of the true class and, with ``drop``, the global view with that region
    erased."""

    def forward(
        model: SmallCNN, index: Tensor, batch: Tensor, target: Tensor
    ) -> list[Tensor]:
        features = model.features(batch)
        outputs = [model.fc(model.pool(features).flatten(1))]
        # As in WS-DAN, the crop is the box around all pixels above the threshold (no
        # connected components), made at a coarse resolution: it runs at every step.
        maps = step_cam(model, features, target, config.training_map_size)
        windows = attention_windows(maps, config)
        outputs.append(
            model(channels_last(_crop(full[index], windows, config.input_size)))
        )
        if drop:
            view_size = batch.shape[-1]
            upsampled = F.interpolate(
                maps[:, None], size=(view_size, view_size), mode="bilinear"
            )
            keep = upsampled < config.drop_ratio
            outputs.append(model(batch * keep.to(batch.dtype)))
        return outputs

    return forward
