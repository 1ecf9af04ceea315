"""CAM itself (Zhou et al., 2016): the classifier's weights applied to the feature
maps."""

from __future__ import annotations

from torch import Tensor

from .base import MethodInputs, register, weighted_sum


@register("cam", needs_head=True)
def cam(inputs: MethodInputs) -> Tensor:
    r"""CAM, Zhou et al. (2016): the classifier's weights applied to the feature maps.

    .. math:: M_c(i, j) = \sum_k w^c_k\, f_k(i, j)

    :math:`w^c` is row :math:`c` of the linear classifier that follows global average
    pooling, so :math:`\frac{1}{hw}\sum_{i,j} M_c(i, j) + b_c = S_c`: the map's mean
    plus the bias is the logit. All T classes in one einsum.

    Args:
        inputs: the layer's activations ``[B, K, h, w]``, the GAP + linear head and the
            classes ``[B, T]``.

    Returns:
        Raw maps ``[B, T, h, w]``, one per class asked of each image.
    """
    assert inputs.head is not None
    class_weights = inputs.head.weight[inputs.classes]  # [B, T, K]
    features = inputs.head.pooled_features(inputs.activations)
    return weighted_sum(features, class_weights)
