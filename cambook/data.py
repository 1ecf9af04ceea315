"""Sample photos: real pictures that ship with scikit-image (no download)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from camlib import models
from camlib.models import Preprocessing
from camlib.postprocess import mask_to_box

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")


def photo(name: str) -> Tensor:
    """One scikit-image photo as RGB ``[3, H, W]`` floats in [0, 1]."""
    from skimage import data

    if name not in PHOTOS:
        raise ValueError(f"photo: expected one of {PHOTOS}, got {name!r}")
    pixels = torch.from_numpy(getattr(data, name)().copy())
    return pixels.permute(2, 0, 1).float() / 255


def photo_batch(
    names: Sequence[str] = PHOTOS, preprocessing: Preprocessing | None = None
) -> tuple[Tensor, Tensor]:
    """``(display, inputs)``: what the model sees as RGB in [0, 1] (for figures, so maps
    are drawn over exactly that) and the same normalised (the model's inputs), both
    ``[B, 3, size, size]``. The default preprocessing keeps each photo's aspect ratio
    (letterbox), normalised for EfficientNet-Lite0; pass
    ``models.preprocessing("squash")`` or ``"crop"`` to compare."""
    prep = preprocessing or models.preprocessing()
    display = torch.cat([prep.resize(photo(name)[None]) for name in names])
    return display, prep.normalize(display)


# --- A fine-grained synthetic data set with ground truth
# ----------------------------------------- Each scene holds clutter and one ringed
# disc. The ring's colour (the "genus", 4 values) survives downsampling; the stripes
# inside the disc (the "species": horizontal or vertical, period 4 px) average to flat
# grey in every 4 x 4 block, so they vanish at a quarter of the resolution. Class = 2 *
# genus + species: 8 classes, half of the information visible only up close.

RING_COLOURS = (
    (0.9, 0.15, 0.1),
    (0.1, 0.75, 0.2),
    (0.15, 0.35, 0.95),
    (0.95, 0.85, 0.1),
)
SPECIES = ("horizontal", "vertical")
_MAX_HALF = 10  # clutter shapes are at most 2 * 10 + 1 pixels across
SCENE_CLASSES = tuple(
    f"{colour}-{stripes}"
    for colour in ("red", "green", "blue", "yellow")
    for stripes in SPECIES
)


@dataclass(frozen=True)
class Scenes:
    """Synthetic scenes: images uint8 [N, 3, S, S], labels [N], boxes [N, 4] (x0, y0,
    x1, y1; ends exclusive, full-resolution pixels) and object masks bool [N, S, S]."""

    images: Tensor
    labels: Tensor
    boxes: Tensor
    masks: Tensor

    def __len__(self) -> int:
        return self.labels.shape[0]

    def __getitem__(self, index) -> Scenes:
        return Scenes(
            self.images[index], self.labels[index], self.boxes[index], self.masks[index]
        )

    def float_images(self) -> Tensor:
        return self.images.float() / 255


def make_scenes(
    count: int,
    seed: int,
    size: int = 128,
    radius: tuple[int, int] = (9, 13),
    ring_width: int = 3,
    distractors: tuple[int, int] = (3, 7),
    chunk: int = 1000,
) -> Scenes:
    """``count`` scenes, deterministic in ``seed`` (torch's generator; no global state
    touched)."""
    if count < 1 or size < 4 * (radius[1] + ring_width + 1):
        raise ValueError(
            f"count >= 1 and size >= {4 * (radius[1] + ring_width + 1)} "
            f"expected, got {count}, {size}"
        )
    generator = torch.Generator().manual_seed(seed)
    parts = [
        _scene_chunk(
            min(chunk, count - start), size, radius, ring_width, distractors, generator
        )
        for start in range(0, count, chunk)
    ]
    return Scenes(*(torch.cat(tensors) for tensors in zip(*parts)))


def _uniform(
    generator: torch.Generator, shape: tuple[int, ...], low: float, high: float
) -> Tensor:
    return low + (high - low) * torch.rand(shape, generator=generator)


def _scene_chunk(
    n: int,
    size: int,
    radius: tuple[int, int],
    ring_width: int,
    distractors: tuple[int, int],
    generator: torch.Generator,
) -> tuple[Tensor, ...]:
    # Painter's algorithm on a layer-id map [n, S, S] (0: background, 1..D: clutter,
    # D+1: disc, D+2: ring), coloured once at the end: cheap, since grids broadcast and
    # colours are gathered.
    xs = torch.arange(size, dtype=torch.float32).view(1, 1, size)
    ys = xs.view(1, size, 1)
    count = distractors[1]
    # one spare cell at the end of each flat layer map receives the writes that fall
    # outside
    flat_layer = torch.zeros((n, size * size + 1), dtype=torch.uint8)
    reach = torch.arange(-_MAX_HALF, _MAX_HALF + 1)
    for k in range(1, count + 1):
        present = (
            torch.rand((n, 1, 1), generator=generator) < (sum(distractors) / 2) / count
        )
        cx, cy = (_uniform(generator, (n, 1, 1), 0, size) for _ in range(2))
        half = _uniform(generator, (n, 1, 1), 3, _MAX_HALF)
        square = torch.rand((n, 1, 1), generator=generator) < 0.5
        # only the (2 * reach + 1)^2 pixels around each centre can be inside: test just
        # those
        px = cx.floor().long() + reach.view(1, 1, -1)
        py = cy.floor().long() + reach.view(1, -1, 1)
        dx, dy = px - cx, py - cy
        inside = torch.where(
            square, torch.maximum(dx.abs(), dy.abs()) <= half, dx**2 + dy**2 <= half**2
        )
        inside &= present & (px >= 0) & (px < size) & (py >= 0) & (py < size)
        target = torch.where(inside, py * size + px, size * size).view(n, -1)
        flat_layer.scatter_(1, target, k)
    layer = flat_layer[:, :-1].view(n, size, size)
    r = torch.randint(radius[0], radius[1] + 1, (n, 1, 1), generator=generator).float()
    outer = r + ring_width
    margin = outer + 1
    cx = margin + torch.rand((n, 1, 1), generator=generator) * (size - 2 * margin)
    cy = margin + torch.rand((n, 1, 1), generator=generator) * (size - 2 * margin)
    genus = torch.randint(0, len(RING_COLOURS), (n,), generator=generator)
    species = torch.randint(0, len(SPECIES), (n,), generator=generator)
    # Colours are quantised to bytes early, so the full-size selections below move
    # bytes.
    palette = torch.rand((n, count + 3, 3), generator=generator)
    palette[:, count + 2] = torch.tensor(RING_COLOURS)[genus]
    palette = _to_bytes(palette.transpose(1, 2))  # [n, 3, D + 3]
    gradient = (xs + ys).unsqueeze(0) / (2 * size)
    base = _uniform(generator, (n, 3, 1, 1), 0.25, 0.6)
    tilt = _uniform(generator, (n, 3, 1, 1), -0.15, 0.15)
    noise = torch.randn((n, 1, size, size), generator=generator)
    phase = torch.randint(0, 4, (n,), generator=generator)
    # The stripes depend on the species and the phase alone: 8 patterns, looked up.
    stripes = _stripe_patterns(size)[species * 4 + phase]  # [n, S, S] bytes
    # All random numbers are drawn; the full-size work runs in blocks of scenes, so that
    # the float images stay in cache (the same operations as on the whole chunk at
    # once).
    masks = torch.empty((n, size, size), dtype=torch.bool)
    pixels = torch.empty((n, 3, size, size), dtype=torch.uint8)
    for start in range(0, n, _BLOCK):
        part = slice(start, start + _BLOCK)
        distance2 = (xs - cx[part]) ** 2 + (ys - cy[part]) ** 2
        disc, masks[part] = distance2 <= r[part] ** 2, distance2 <= outer[part] ** 2
        layer[part].masked_fill_(masks[part], count + 2).masked_fill_(disc, count + 1)
        index = layer[part].long().view(-1, 1, size * size).expand(-1, 3, size * size)
        drawn = palette[part].gather(2, index).view(-1, 3, size, size)
        background = base[part] + tilt[part] * gradient + 0.03 * noise[part]
        painted = torch.where(layer[part, None] == 0, _to_bytes(background), drawn)
        pixels[part] = torch.where(disc[:, None], stripes[part, None], painted)
    return pixels, genus * len(SPECIES) + species, mask_to_box(masks), masks


_BLOCK = 64  # scenes painted at a time


def _stripe_patterns(size: int) -> Tensor:
    """[8, S, S] bytes: pattern ``4 * species + phase``, dark where ``((coordinate +
    phase) // 2)`` is odd, the coordinate being the row for horizontal stripes and the
    column for vertical."""
    grid = torch.arange(size)
    patterns = []
    for species in range(len(SPECIES)):
        coordinate = (
            grid.view(size, 1) if species == 0 else grid.view(1, size)
        ).expand(size, size)
        for phase in range(4):
            dark = ((coordinate + phase) // 2) % 2 == 1
            patterns.append(
                torch.where(
                    dark, _to_bytes(torch.tensor(0.15)), _to_bytes(torch.tensor(0.85))
                )
            )
    return torch.stack(patterns)


def _to_bytes(values: Tensor) -> Tensor:
    return values.clamp(0, 1).mul(255).round().to(torch.uint8)


def downsample(images: Tensor, factor: int = 4) -> Tensor:
    """Area-average ``factor`` x ``factor`` blocks: the coarse view in which the stripes
    vanish."""
    return torch.nn.functional.avg_pool2d(images, factor)
