"""Where the channels are in a layer's output, and how to read it as ``[B, K, h, w]``.

Three layouts are known: ``"channels_first"`` ``[B, K, h, w]`` (convolutional networks),
``"channels_last"`` ``[B, h, w, K]`` (Swin, the inside of ConvNeXt blocks) and
``"tokens"`` ``[B, L, K]`` (ViT, DeiT): ``L = r + h w``, ``r`` leading class or register
tokens, then the patch tokens row by row. The methods only ever see ``[B, K, h, w]``;
the leading tokens are not positions of the map. Anything else is read by a user's
``reshape`` callable.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import torch
from torch import Tensor, nn

LAYOUTS = ("channels_first", "channels_last", "tokens")
MAX_EXTRA_TOKENS = 16  # class, distillation and register tokens before the patch tokens


@dataclass(frozen=True)
class Layout:
    """How one layer's output (shape ``shape`` per image) becomes maps ``[K, h, w]``."""

    name: str  # one of LAYOUTS, or "reshape"
    shape: tuple[int, ...]  # the output's shape without the batch axis
    grid: tuple[int, int]  # (h, w)
    extra: int = 0  # leading tokens left out of the map (tokens only)
    reshape: Callable[[Tensor], Tensor] | None = field(default=None, compare=False)

    def to_maps(self, output: Tensor) -> Tensor:
        """``[*lead, *shape]`` -> ``[*lead, K, h, w]``; ``lead`` is ``(B,)``, or
        ``(B, T)`` for gradients (one per class). A view where the layout allows it."""
        if self.name == "channels_first":
            return output
        if self.name == "channels_last":
            return output.movedim(-1, -3)
        if self.name == "tokens":
            patches = output[..., self.extra :, :].unflatten(-2, self.grid)
            return patches.movedim(-1, -3)
        lead = output.shape[: output.ndim - len(self.shape)]
        maps = self.reshape(output.reshape(-1, *self.shape))
        return maps.reshape(*lead, *maps.shape[1:])

    def restore(self, maps: Tensor, originals: Tensor) -> Tensor:
        """Maps ``[R, K, h, w]`` put back into the layer's layout; the leading tokens
        (and, for a ``reshape``, whatever it leaves out) are taken from ``originals``
        ``[R, *shape]``."""
        if self.name == "channels_first":
            return maps
        if self.name == "channels_last":
            return maps.movedim(1, -1).contiguous()
        if self.name == "tokens":
            out = originals.clone()
            out[:, self.extra :, :] = maps.flatten(2).transpose(1, 2)
            return out
        out = originals.clone().flatten(1)
        positions = self._positions.flatten().to(out.device)
        out[:, positions] = maps.flatten(1).to(out.dtype)
        return out.reshape(originals.shape)

    @cached_property
    def _positions(self) -> Tensor:
        """Where each value of the maps comes from in the output (a flat index per
        image), found by passing the indices through ``reshape``; it must only rearrange
        values.
        """
        count = math.prod(self.shape)
        index = torch.arange(count, dtype=torch.float64).reshape(1, *self.shape)
        moved = self.reshape(index)
        probe = torch.randn(1, *self.shape, dtype=torch.float64)
        ok = (
            isinstance(moved, Tensor)
            and moved.dtype == torch.float64
            and moved.ndim == 4
            and bool((moved == moved.round()).all())
            and bool((moved >= 0).all())
            and bool((moved < count).all())
        )
        if ok:
            positions = moved[0].long()
            ok = torch.equal(self.reshape(probe)[0], probe.flatten()[positions])
        if not ok:
            raise ValueError(
                "reshape: Ablation-CAM puts each ablated map back into the layer's "
                "output, which needs reshape to only select, permute and reshape "
                "values; this one computes new values. Pass layout= instead, or use "
                "another method."
            )
        return positions


@dataclass(frozen=True)
class LayoutOptions:
    """The ``layout`` and ``reshape`` arguments: None, one value for every layer, or a
    dict by layer name."""

    layout: object = None
    reshape: object = None

    @classmethod
    def checked(
        cls, layout: object, reshape: object, layers: list[str] | None
    ) -> LayoutOptions:
        for argument, value in (("layout", layout), ("reshape", reshape)):
            values = value.values() if isinstance(value, dict) else [value]
            if isinstance(value, dict):
                unknown = [n for n in value if layers is None or n not in layers]
                if unknown:
                    raise ValueError(
                        f"{argument}: names layers {unknown} that are not in "
                        f"layers={layers}"
                    )
            for item in (v for v in values if v is not None):
                if argument == "layout" and not isinstance(item, str):
                    raise TypeError(f"layout: expected None, one of {list(LAYOUTS)} or "
                                    f"a dict of them, got {type(item).__name__}")
                if argument == "layout" and item not in LAYOUTS:
                    raise ValueError(f"layout: expected one of {list(LAYOUTS)}, got "
                                     f"{item!r}")
                if argument == "reshape" and not callable(item):
                    raise TypeError("reshape: expected a callable (layer output -> "
                                    "[B, K, h, w]) or a dict of them, got "
                                    f"{type(item).__name__}")
        options = cls(layout, reshape)
        for name in layers or []:
            if None not in options.for_layer(name):
                raise ValueError(f"layer {name!r}: pass layout= or reshape=, not both")
        return options

    def for_layer(self, name: str) -> tuple[str | None, Callable | None]:
        layout, reshape = (v.get(name) if isinstance(v, dict) else v
                           for v in (self.layout, self.reshape))
        return layout, reshape


def infer_layout(
    name: str,
    module: nn.Module,
    output: Tensor,
    model: nn.Module,
    image_size: tuple[int, int],
    layout: str | None = None,
    reshape: Callable[[Tensor], Tensor] | None = None,
) -> Layout:
    """The layout of ``output``, the output of layer ``name`` (``module``) for images of
    ``image_size`` (H, W): the one given, else the module's own (torchvision's
    channels-last producers), else the one the shape allows. Ambiguous or impossible: a
    ValueError. A 4-D shape that fits both readings is read channels-first when no
    module of the model produces channels-last outputs (a convolutional network); a
    permute written in a ``forward`` is invisible to that check: pass ``layout=``."""
    shape = tuple(output.shape)
    if reshape is not None:
        return _reshaped(name, output, reshape)
    if output.ndim == 3 and layout in (None, "tokens"):
        extra, grid = token_grid(name, shape, model, image_size)
        return Layout("tokens", shape[1:], grid, extra)
    if output.ndim == 4 and layout in (None, "channels_first", "channels_last"):
        first, last = (shape[2], shape[3]), (shape[1], shape[2])
        choice = layout or producer_layout(module)
        if choice is None:
            fits_first, fits_last = fits(first, image_size), fits(last, image_size)
            if fits_first != fits_last:
                choice = "channels_first" if fits_first else "channels_last"
            elif not has_channels_last_producers(model):
                # a convolutional network: nothing is channels-last
                choice = "channels_first"
            else:
                raise ValueError(
                    f"layer {name!r}: its output {shape} could be channels-first "
                    f"[B, K, h, w] (K = {shape[1]} on a {first[0]} x {first[1]} grid) "
                    f"or channels-last [B, h, w, K] (K = {shape[3]} on a {last[0]} x "
                    f"{last[1]} grid) for {image_size[0]} x {image_size[1]} images; "
                    "say which with "
                    "layout='channels_first' or layout='channels_last'"
                )
        return Layout(choice, shape[1:], first if choice == "channels_first" else last)
    if layout is not None and output.ndim in (3, 4):
        want = "[B, L, K]" if layout == "tokens" else "[B, K, h, w] or [B, h, w, K]"
        raise ValueError(
            f"layer {name!r}: layout={layout!r} expects a {want} output, got {shape}"
        )
    raise ValueError(
        f"layer {name!r}: its output {shape} has no spatial axes; expected "
        "[B, K, h, w], [B, h, w, K] or tokens [B, L, K]. Pick a layer before the "
        "pooling and the classifier, or pass reshape= to turn this output into "
        "[B, K, h, w]"
    )


def _reshaped(name: str, output: Tensor, reshape: Callable[[Tensor], Tensor]) -> Layout:
    maps = reshape(output)
    if (
        not isinstance(maps, Tensor)
        or maps.ndim != 4
        or maps.shape[0] != output.shape[0]
    ):
        if isinstance(maps, Tensor):
            got = f"a tensor of shape {tuple(maps.shape)} ({maps.ndim} axes)"
        else:
            got = f"a {type(maps).__name__}, not a tensor"
        hint = ""
        if output.ndim == 3:
            hint = (
                "; for tokens [B, L, K], drop the class token(s), unflatten L into "
                "(h, w) and move K to axis 1, as in "
                "t[:, 1:].unflatten(1, (h, w)).permute(0, 3, 1, 2)"
            )
        raise ValueError(
            f"layer {name!r}: reshape should turn its output {tuple(output.shape)} "
            f"into maps [B, K, h, w] (4 axes, B = {output.shape[0]}), but it "
            f"returned {got}{hint}"
        )
    return Layout(
        "reshape", tuple(output.shape[1:]), tuple(maps.shape[-2:]), reshape=reshape
    )


def producer_layout(module: nn.Module) -> str | None:
    """The layout a module is known to produce on a 4-D input, or None: torchvision's
    ``Permute``, ``LayerNorm`` and ``Linear`` (which act on the last axis), Swin's
    blocks and patch merging; a ``Sequential`` produces what its last module does."""
    while isinstance(module, nn.Sequential) and len(module) > 0:
        module = module[-1]
    kind = type(module).__name__
    if kind == "Permute":
        dims = list(getattr(module, "dims", []))
        moves = {(0, 2, 3, 1): "channels_last", (0, 3, 1, 2): "channels_first"}
        return moves.get(tuple(dims))
    if kind.startswith(("SwinTransformerBlock", "PatchMerging")):
        return "channels_last"
    if isinstance(module, CHANNELS_FIRST_PRODUCERS):
        return "channels_first"
    if isinstance(module, nn.Linear) or (
        isinstance(module, nn.LayerNorm)
        and kind == "LayerNorm"
        and len(module.normalized_shape) == 1
    ):
        return "channels_last"
    return None


CHANNELS_FIRST_PRODUCERS = (nn.Conv2d, nn.BatchNorm2d, nn.GroupNorm, nn.MaxPool2d,
                            nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


def has_channels_last_producers(model: nn.Module) -> bool:
    """Whether any module of ``model`` may produce a channels-last output."""
    return any(
        producer_layout(m) == "channels_last"
        for m in model.modules()
        if not isinstance(m, (nn.Sequential, nn.Linear))
    )


def fits(grid: tuple[int, int], image_size: tuple[int, int]) -> bool:
    """Whether an h x w grid is the image divided by one stride s, both sides rounded
    the same way (down or up)."""
    (h, w), (height, width) = grid, image_size
    return any(
        (h, w) in ((height // s, width // s), (-(-height // s), -(-width // s)))
        for s in range(1, max(height, width) + 1)
    )


def grid_of(count: int, image_size: tuple[int, int]) -> tuple[int, int] | None:
    """A grid (h, w) of ``count`` cells that :func:`fits` the image, or None."""
    return next(((h, count // h) for h in range(1, count + 1)
                 if count % h == 0 and fits((h, count // h), image_size)), None)


def token_grid(
    name: str, shape: tuple[int, ...], model: nn.Module, image_size: tuple[int, int]
) -> tuple[int, tuple[int, int]]:
    """``(r, (h, w))`` for ``L`` tokens: ``r`` from the model's ``num_prefix_tokens``
    (timm) or the grid from its ``patch_size`` (torchvision's VisionTransformer) when it
    has one, else the fewest leading tokens ``r`` (at most :data:`MAX_EXTRA_TOKENS`, and
    fewer than the patches) for which the rest form a grid of the image divided by one
    stride."""
    tokens = shape[1]
    prefix = getattr(model, "num_prefix_tokens", None)  # timm's class, register tokens
    if isinstance(prefix, int) and 0 <= prefix < tokens:
        grid = grid_of(tokens - prefix, image_size)
        if grid is not None:
            return prefix, grid
    patch = getattr(model, "patch_size", None)
    if isinstance(patch, int) or (isinstance(patch, tuple) and len(patch) == 2):
        ph, pw = (patch, patch) if isinstance(patch, int) else patch
        grid = (image_size[0] // ph, image_size[1] // pw)
        extra = tokens - grid[0] * grid[1]
        if 0 <= extra <= MAX_EXTRA_TOKENS:
            return extra, grid
    for extra in range(0, min(MAX_EXTRA_TOKENS, (tokens - 1) // 2) + 1):
        grid = grid_of(tokens - extra, image_size)
        if grid is not None:
            return extra, grid
    raise ValueError(
        f"layer {name!r}: its output {shape} reads as {tokens} tokens of {shape[2]} "
        f"channels, but {tokens} is not a grid of patches for a {image_size[0]} x "
        f"{image_size[1]} image (after up to {MAX_EXTRA_TOKENS} class or register "
        "tokens); pass reshape= to turn it into [B, K, h, w]"
    )
