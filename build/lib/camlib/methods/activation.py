"""CAM itself (Zhou et al., 2016): the classifier's weights applied to the feature maps."""
from __future__ import annotations

from torch import Tensor

from .base import MethodInputs, register, weighted_sum


@register("cam", needs_head=True)
def cam(inputs: MethodInputs) -> Tensor:
    """Zhou et al. (2016): ``M_c(x, y) = sum_k w_k^c f_k(x, y)``, all T classes in one
    einsum.

    ``w^c`` is row ``c`` of the linear classifier that follows global average pooling,
    so the spatial mean of ``M_c`` plus the bias is exactly the logit of class ``c``.
    """
    assert inputs.head is not None
    class_weights = inputs.head.weight[inputs.classes]  # [B, T, K]
    features = inputs.head.pooled_features(inputs.activations)
    return weighted_sum(features, class_weights)
