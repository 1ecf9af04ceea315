"""The typical mistakes of the sample class, one table per exercise.

Each exercise has one *subtle* mistake that passes its visible checks and must be caught
by a hidden check (``caught_by``, the id of the check cell that must fail); some have
more. For the reasoning exercises a mistake is a wrong answer of the right form.
``BROKEN`` holds cell bodies that break a notebook as a whole. Used by
``make_sample_class.py``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mistake:
    body: str
    caught_by: str  # the id of the check cell that must fail
    what: str


MISTAKES: dict[str, dict[str, Mistake]] = {
    "1.1": {
        "subtle": Mistake(
            """
        top = logits.topk(k, dim=1)
        return top.indices, top.values.softmax(dim=1)
    """,
            "ex1-1-hidden",
            "softmax of the top-k logits only",
        )
    },
    "1.2": {
        "subtle": Mistake(
            """
        height = maps.shape[-2]
        flat = maps.flatten(-2).argmax(dim=-1)
        return torch.stack([flat // height, flat % height], dim=-1)
    """,
            "ex1-2-hidden",
            "divides the flat index by the height (right for square maps only)",
        )
    },
    "1.3": {
        "subtle": Mistake(
            """
        region_a, region_b = map_a >= ratio, map_b >= ratio
        return (region_a & region_b).sum(dim=(-2, -1)).float() / (region_a | \
region_b).sum(dim=(-2, -1)).float()
    """,
            "ex1-3-hidden",
            "absolute threshold instead of a fraction of the map's maximum",
        )
    },
    "2.1": {
        "subtle": Mistake(
            """
        return raw_maps.mean() + biases
    """,
            "ex2-1-hidden",
            "averages over every dimension (right for a single map only)",
        )
    },
    "2.2": {
        "subtle": Mistake(
            """
            probabilities = (features.mean(dim=(-2, -1)) @ weight.T + \
bias).softmax(dim=1)
            maps = torch.einsum("bkhw,bk->bhw", features, weight[classes])
            return probabilities.gather(1, classes[:, None])[:, :, None] * maps
        """,
            "ex2-2-hidden",
            "CAM scaled by the softmax probability (looks right once normalised)",
        ),
        "mixed": Mistake(
            """
            probabilities = (features.mean(dim=(-2, -1)) @ weight.T + \
bias).softmax(dim=1)
            return torch.einsum("bkhw,bk->bhw", features, probabilities @ weight)
        """,
            "ex2-2-check",
            "feature maps weighted by a probability-weighted mix of all classes' rows",
        ),
    },
    "2.3": {
        "subtle": Mistake(
            """
        features = features.detach().requires_grad_(True)
        with torch.enable_grad():
            chosen = head(features).gather(1, classes[:, None]).sum()
            (gradients,) = torch.autograd.grad(chosen, features)
        return (gradients * features.detach()).sum(dim=1)
    """,
            "ex2-3-hidden",
            "gradient x activation per cell instead of averaged gradients "
            "(same for a GAP head)",
        )
    },
    "3.1": {
        "subtle": Mistake(
            """
        captured = {}
        handle = feature_layer.register_forward_hook(lambda module, args, output: \
captured.update(features=output))
        with torch.no_grad():
            model(images)
        handle.remove()
        return torch.einsum("bkhw,bk->bhw", captured["features"], \
linear.weight.detach()[classes])
    """,
            "ex3-1-hidden",
            "the hook leaks when the forward pass raises (no try/finally)",
        )
    },
    "3.2": {
        "subtle": Mistake(
            """
        return {name: len(module._forward_hooks) for name, module in \
model.named_modules() if module._forward_hooks}
    """,
            "ex3-2-hidden",
            "counts forward hooks only",
        )
    },
    "3.3": {
        "subtle": Mistake(
            """
        rows, columns = torch.nonzero(cam_map >= ratio * cam_map.max(), as_tuple=True)
        return int(columns.min()), int(rows.min()), int(columns.max()) + 1, \
int(rows.max()) + 1
    """,
            "ex3-3-hidden",
            "box around all pixels above the threshold, not the largest region",
        )
    },
    "4.1": {
        "subtle": Mistake(
            """
        a, b = a.float(), b.float()
        width = (torch.minimum(a[:, 2], b[:, 2]) - torch.maximum(a[:, 0], b[:, 0]) + \
1).clamp(min=0)
        height = (torch.minimum(a[:, 3], b[:, 3]) - torch.maximum(a[:, 1], b[:, 1]) + \
1).clamp(min=0)
        intersection = width * height
        area_a = (a[:, 2] - a[:, 0] + 1) * (a[:, 3] - a[:, 1] + 1)
        area_b = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
        return intersection / (area_a + area_b - intersection)
    """,
            "ex4-1-hidden",
            "inclusive ends (+1), the other box convention",
        )
    },
    "4.2": {
        "subtle": Mistake(
            """
        cells, pixels = maps.shape[-1], masks.shape[-1]
        flat = maps.flatten(1).argmax(dim=1)
        x = (flat % cells) * pixels // cells
        y = (flat // cells) * pixels // cells
        return masks[torch.arange(masks.shape[0]), y, x]
    """,
            "ex4-2-hidden",
            "the corner of the peak cell instead of its centre",
        )
    },
    "4.3": {
        "subtle": Mistake(
            """
        box = camlib.zhou_boxes(cam_map, ratio).float() * (image_size / \
cam_map.shape[-1])
        x0, y0, x1, y1 = box.tolist()
        side = min(max(margin * max(x1 - x0, y1 - y0), min_side), image_size)
        left, top = (x0 + x1) / 2 - side / 2, (y0 + y1) / 2 - side / 2
        return torch.tensor([left, top, left + side, top + side])
    """,
            "ex4-3-hidden",
            "the window is not shifted into the image near the edges",
        )
    },
    "5.1": {
        "subtle": Mistake(
            """
        return (gradients.mean(dim=(-2, -1), keepdim=True) * activations).sum(dim=1)
    """,
            "ex5-1-hidden",
            "Grad-CAM's spatially averaged gradients (the same under a GAP head)",
        )
    },
    "6.1": {
        "subtle": Mistake(
            """
        pixels = saliency.numel()
        order = torch.sort(saliency.flatten(), descending=True, stable=True).indices
        rank = torch.empty_like(order)
        rank[order] = torch.arange(pixels)
        counts = torch.tensor([s * pixels // steps for s in range(steps + 1)])
        keep = (rank[None, :] >= counts[:, None]).view(steps + 1, 1, *saliency.shape)
        scores = predict(image[None] * keep.to(image.dtype))
        return scores, float(torch.trapezoid(scores, counts.to(scores.dtype) / pixels))
    """,
            "ex6-1-hidden",
            "pixel counts floored, not rounded (right when steps divides P)",
        )
    },
    "6.2": {
        "subtle": Mistake(
            """
        ra, rb = a.argsort().argsort().double(), b.argsort().argsort().double()
        ra, rb = ra - ra.mean(), rb - rb.mean()
        return float((ra * rb).sum() / (ra.square().sum() * rb.square().sum()).sqrt())
    """,
            "ex6-2-hidden",
            "ordinal ranks: ties do not share their average rank",
        )
    },
    # the conceptual exercises: answers of the right form, one part wrong
    "1.4": {
        "subtle": Mistake(
            """
        answer_1_4 = {"gap": 4.605, "shift": "A", "sharpen": "B"}
    """,
            "ex1-4-hidden",
            "solves 1 / (1 + 100 e^-d) = 1/2: the top class among the others",
        )
    },
    "2.4": {
        "subtle": Mistake(
            """
        answer_2_4 = {"map": [[2.5, -1.5], [-5, 2]], "score": -0.75,
                      "gradcam": [[2.5, -1.5], [-5, 2]]}
    """,
            "ex2-4-hidden",
            "Grad-CAM taken for CAM itself, without the factor 1/(hw)",
        )
    },
    "3.4": {
        "subtle": Mistake(
            """
        answer_3_4 = {"relu_box": (1, 1, 3, 3), "signed_box": (1, 0, 4, 3), "hooks": 0}
    """,
            "ex3-4-hidden",
            "believes a hook goes when the function that registered it raises",
        )
    },
    "4.4": {
        "subtle": Mistake(
            """
            answer_4_4 = {"side": 90, "flat": "A", "centre": "B"}
        """,
            "ex4-4-hidden",
            "rounds the side sqrt(0.5) x 128 = 90.5 down",
        ),
        "guess": Mistake(
            """
            answer_4_4 = {"side": 91, "flat": "C", "centre": "C"}
        """,
            "ex4-4-hidden",
            "the number right, the choices guessed",
        ),
    },
    "5.2": {
        "subtle": Mistake(
            """
        answer_5_2 = {"factor": 64, "hirescam": [[0.5, 0.75], [1.25, 0.5]],
                      "gradcam": [[0.5, 0.75], [1.25, 0.5]], "agree": "B"}
    """,
            "ex5-2-hidden",
            "HiResCAM worked out with the mean gradient: Grad-CAM's map twice",
        )
    },
    "6.3": {
        "subtle": Mistake(
            """
        answer_6_3 = {"drop": -7.5, "increase": 50, "auc": 0.35, "ones": "C"}
    """,
            "ex6-3-hidden",
            "average drop without max(0, .): a gain offsets a drop",
        )
    },
}

BROKEN = {
    # a syntax error makes the whole cell fail, so the function is never defined
    "syntax": 'print("almost done"\n',
    # the function never returns: the first check that calls it hits the cell timeout
    "loop": "while True:\n    pass\n",
}
