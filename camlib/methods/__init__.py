"""The CAM family, one module per family, all joined in one registry (``METHODS``).

Adding a method is one function and one :func:`register` line in the module of its
family.
"""

# imported in the order the registry lists the methods: CAM, gradients, Eigen-CAM,
# perturbation
from . import activation, gradient, eigen, perturbation  # noqa: F401,I001
from .base import (
    METHODS,
    LinearHead,
    Method,
    MethodInputs,
    get_method,
    register,
    weighted_sum,
)
from .eigen import first_component

__all__ = [
    "METHODS",
    "LinearHead",
    "Method",
    "MethodInputs",
    "first_component",
    "get_method",
    "register",
    "weighted_sum",
]
