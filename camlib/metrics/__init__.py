"""Metrics for maps: faithfulness (deletion, insertion, confidence), localisation
(pointing game, Zhou boxes) and ROAD. Every function is method-agnostic: it takes maps
``[B, H, W]``, however they were made. Maps of another size than the images (or masks)
are upsampled bilinearly (:func:`image_maps`); maps with NaN or Inf, on another device,
or an empty batch raise ``ValueError``."""

from .faithfulness import (
    BASELINES,
    ConfidenceChange,
    Curves,
    baseline_images,
    confidence_change,
    perturbation_curve,
    pixel_order,
    step_counts,
)
from .inputs import class_probabilities, image_maps
from .localisation import (
    boxes_to_masks,
    localisation,
    localisation_per_image,
    map_boxes,
    pointing_game,
    threshold_sweep,
)
from .road import linear_imputation, road

__all__ = [
    "BASELINES",
    "ConfidenceChange",
    "Curves",
    "baseline_images",
    "boxes_to_masks",
    "class_probabilities",
    "confidence_change",
    "image_maps",
    "linear_imputation",
    "localisation",
    "localisation_per_image",
    "map_boxes",
    "perturbation_curve",
    "pixel_order",
    "pointing_game",
    "road",
    "step_counts",
    "threshold_sweep",
]
