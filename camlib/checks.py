"""Input validation with messages that say what was expected and what came."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Union

import torch
from torch import Tensor, nn

#: What ``classes`` may be: None (the top-scoring classes), one class index for every
#: image, a list or tensor of one index per image ``[B]``, or of T indices per image
#: ``[B, T]``.
Classes = Union[None, int, Sequence[int], Sequence[Sequence[int]], Tensor]


def expected_channels(model: nn.Module) -> int | None:
    """Input channels of the model's first convolution, if it has one."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module.in_channels
    return None


def check_images(model: nn.Module, images: object) -> Tensor:
    if not isinstance(images, Tensor):
        raise TypeError(
            f"images: expected a torch.Tensor [B, C, H, W], got {type(images).__name__}"
        )
    if not images.is_floating_point():
        raise TypeError(
            "images: expected a floating-point tensor (normalised pixels), "
            f"got dtype {images.dtype}; "
            "convert with images.float() / 255 and the model's normalisation"
        )
    if images.ndim != 4:
        raise ValueError(
            "images: expected a 4-D tensor [B, C, H, W], got shape "
            f"{tuple(images.shape)}"
        )
    if images.shape[0] == 0:
        raise ValueError(
            "images: expected at least one image, got an empty batch "
            f"{tuple(images.shape)}"
        )
    channels = expected_channels(model)
    if channels is not None and images.shape[1] != channels:
        raise ValueError(
            f"images: the model's first convolution expects {channels} channels, "
            f"got {images.shape[1]} (shape {tuple(images.shape)})"
        )
    parameter = next(model.parameters(), None)
    if parameter is not None and parameter.device != images.device:
        raise ValueError(
            f"images are on {images.device} but the model is on {parameter.device}"
        )
    if not bool(torch.isfinite(images).all()):
        raise ValueError("images: expected finite values, got NaN or Inf")
    return images


def check_topk(topk: object) -> int:
    if isinstance(topk, bool) or not isinstance(topk, int):
        raise TypeError(f"topk: expected a positive int, got {type(topk).__name__}")
    if topk < 1:
        raise ValueError(f"topk: expected a positive int, got {topk!r}")
    return topk


def check_batch_size(batch_size: object) -> int | None:
    if batch_size is None:
        return None
    if isinstance(batch_size, bool) or not isinstance(batch_size, int):
        raise TypeError(
            f"batch_size: expected None or a positive int, got "
            f"{type(batch_size).__name__}"
        )
    if batch_size < 1:
        raise ValueError(
            f"batch_size: expected None or a positive int, got {batch_size!r}"
        )
    return batch_size


def classes_as_rows(
    classes: object, batch_size: int, device: torch.device
) -> Tensor | None:
    """``None``, an int, or a ``[B]`` / ``[B, T]`` integer tensor, as a ``[B, T]``
    LongTensor."""
    if classes is None:
        return None
    if isinstance(classes, bool):
        raise TypeError("classes: expected an int or an integer tensor, got a bool")
    if isinstance(classes, int):
        return torch.full((batch_size, 1), classes, dtype=torch.long, device=device)
    if isinstance(classes, (list, tuple)):
        classes = torch.as_tensor(classes)
    if not isinstance(classes, Tensor):
        raise TypeError(
            "classes: expected None, an int, or a LongTensor [B] or [B, T], "
            f"got {type(classes).__name__}"
        )
    if (
        classes.is_floating_point()
        or classes.is_complex()
        or classes.dtype == torch.bool
    ):
        raise TypeError(
            f"classes: expected an integer tensor, got dtype {classes.dtype}"
        )
    rows = classes[:, None] if classes.ndim == 1 else classes
    if rows.ndim != 2 or rows.shape[0] != batch_size or rows.shape[1] == 0:
        raise ValueError(
            f"classes: expected one row per image, shape [{batch_size}] or "
            f"[{batch_size}, T] with T >= 1, "
            f"got shape {tuple(classes.shape)}"
        )
    return rows.to(device=device, dtype=torch.long)


def check_class_range(classes: Tensor, num_classes: int) -> None:
    if bool(((classes < 0) | (classes >= num_classes)).any()):
        bad = classes[(classes < 0) | (classes >= num_classes)].unique().tolist()
        raise ValueError(
            f"classes: expected indices in [0, {num_classes - 1}], got {bad}"
        )


def _numbers(values: object, count: int) -> bool:
    return (
        isinstance(values, list)
        and len(values) == count
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        and all(math.isfinite(v) for v in values)
    )


def load_boxes(path: str | Path) -> dict[str, list[list[float]]]:
    """A JSON file of ``{relative image path: [[x0, y0, x1, y1], ...]}`` (one box may
    come as a bare ``[x0, y0, x1, y1]``), each box with ``x0 < x1`` and ``y0 < y1``."""
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise ValueError(
            f"--boxes {path}: expected a readable JSON file, got {error}"
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"--boxes {path}: expected JSON, got invalid JSON at line "
            f"{error.lineno} column "
            f"{error.colno} ({error.msg})"
        ) from None
    if not isinstance(data, dict):
        raise ValueError(
            f"--boxes {path}: expected a JSON object (image path -> [[x0, y0, "
            "x1, y1], ...]), "
            f"got a JSON {type(data).__name__}"
        )
    boxes = {}
    for key, value in data.items():
        rows = [value] if _numbers(value, 4) else value
        fine = isinstance(rows, list) and all(
            _numbers(box, 4) and box[0] < box[2] and box[1] < box[3] for box in rows
        )
        if not fine:
            raise ValueError(
                f"--boxes {path}: expected [[x0, y0, x1, y1], ...] of finite "
                "numbers with "
                f"x0 < x1 and y0 < y1 for {key!r}, got {json.dumps(value)[:100]}"
            )
        boxes[key] = [list(box) for box in rows]
    return boxes


def state_dict_mismatch(model: nn.Module, state: object) -> str | None:
    """What keeps ``state`` from loading into ``model`` (missing and unexpected keys,
    tensors of other shapes), in one line; None if it fits."""
    if not isinstance(state, Mapping):
        return f"a {type(state).__name__}, not a dict of tensors"
    expected = model.state_dict()

    def listed(names: list[str]) -> str:
        shown = ", ".join(names[:3])
        return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "")

    problems = []
    missing = [key for key in expected if key not in state]
    unexpected = [str(key) for key in state if key not in expected]
    if missing:
        problems.append(f"{len(missing)} missing keys ({listed(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys ({listed(unexpected)})")
    shapes = [
        f"{key} {tuple(state[key].shape)} (the model's {tuple(value.shape)})"
        if isinstance(state[key], Tensor)
        else f"{key} a {type(state[key]).__name__}"
        for key, value in expected.items()
        if key in state
        and (not isinstance(state[key], Tensor) or state[key].shape != value.shape)
    ]
    if shapes:
        problems.append(f"{len(shapes)} tensors of another shape ({listed(shapes)})")
    return "; ".join(problems) or None


def check_maps(maps: Tensor, device: torch.device, reference: str = "images") -> Tensor:
    """At least one map, on ``device`` (that of the ``reference`` tensor), finite."""
    if maps.shape[0] == 0:
        raise ValueError(
            f"maps: expected at least one map, got an empty batch {tuple(maps.shape)}"
        )
    if maps.device != device:
        raise ValueError(
            f"maps: expected a tensor on the {reference}' device ({device}), "
            f"got one on {maps.device}"
        )
    if not bool(torch.isfinite(maps).all()):
        raise ValueError("maps: expected finite values, got NaN or Inf")
    return maps
