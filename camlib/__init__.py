"""camlib: class activation maps for image classifiers, in torch, batched, on any
device."""

from . import metrics, postprocess, sanity
from .backbones import default_layer
from .explain import Explainer, Explanation, explain
from .methods import METHODS, LinearHead, MethodInputs, register
from .postprocess import normalize, overlay, to_image_maps, upsample, zhou_boxes

__all__ = [
    "METHODS",
    "Explainer",
    "Explanation",
    "LinearHead",
    "MethodInputs",
    "default_layer",
    "explain",
    "metrics",
    "normalize",
    "overlay",
    "postprocess",
    "register",
    "sanity",
    "to_image_maps",
    "upsample",
    "zhou_boxes",
]
__version__ = "0.2.0"
