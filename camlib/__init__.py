"""camlib: class activation maps for image classifiers, in torch, batched, on any device."""
from . import data, models, postprocess
from .explain import Explainer, Explanation, explain
from .methods import METHODS, LinearHead, MethodInputs, register
from .postprocess import normalize, overlay, to_image_maps, upsample, zhou_boxes

__all__ = [
    "METHODS", "Explainer", "Explanation", "LinearHead", "MethodInputs", "data", "explain", "models",
    "normalize", "overlay", "postprocess", "register", "to_image_maps", "upsample", "zhou_boxes",
]
__version__ = "0.1.0"
