"""Sanity checks for maps (Adebayo et al. 2018): does the map change when the model
does?

- :func:`cascading_randomisation`: re-initialise the layers from the top (the
  classifier) down, cumulatively, and compare each step's maps with the trained model's;
- :func:`independent_randomisation`: the same, one layer at a time.

(Data randomisation, which needs training, lives with the book's code:
``cambook.randomisation``.)

Each comparison is per image: the Spearman rank correlation (:func:`spearman`) and the
SSIM (:func:`ssim`) between the two maps. A map that survives randomisation unchanged
cannot be explaining what the model learned. The user's model is never changed: the
randomised models are copies.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import checks
from .explain import explain

# --- similarity of maps ---------------------------------------------------------------


def average_ranks(values: Tensor) -> Tensor:
    """Ranks 1..D of each row of ``values`` [N, D]; tied values share their average
    rank."""
    ordered, order = values.sort(dim=1, stable=True)
    starts = torch.ones_like(ordered, dtype=torch.bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    group = (
        starts.long().cumsum(dim=1) - 1
    )  # [N, D]: index of each sorted value's tie group
    positions = torch.arange(
        1, values.shape[1] + 1, device=values.device, dtype=torch.float64
    )
    sums = torch.zeros(values.shape, dtype=torch.float64, device=values.device)
    sums.scatter_add_(1, group, positions.expand_as(sums))
    counts = torch.zeros_like(sums).scatter_add_(1, group, torch.ones_like(sums))
    sorted_ranks = (sums / counts.clamp_min(1)).gather(1, group)
    return torch.empty_like(sorted_ranks).scatter_(1, order, sorted_ranks)


def pearson(a: Tensor, b: Tensor) -> Tensor:
    """Pearson correlation of each row pair of [N, D] tensors (NaN where a row is
    constant)."""
    a = a.double() - a.double().mean(dim=1, keepdim=True)
    b = b.double() - b.double().mean(dim=1, keepdim=True)
    return (a * b).sum(1) / (a.square().sum(1) * b.square().sum(1)).sqrt()


def spearman(a: Tensor, b: Tensor) -> Tensor:
    """Spearman rank correlation [N] between maps ``a`` and ``b`` [N, ...] (flattened
    per row): Pearson's correlation of the average ranks. NaN where a map is constant
    (undefined)."""
    _same_shape(a, b)
    return pearson(average_ranks(a.flatten(1)), average_ranks(b.flatten(1)))


def gaussian_window(
    size: int = 11, sigma: float = 1.5, device=None, dtype=torch.float64
) -> Tensor:
    """A normalised 1-D Gaussian of ``size`` taps."""
    x = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    window = torch.exp(-(x**2) / (2 * sigma**2))
    return window / window.sum()


def ssim(
    a: Tensor,
    b: Tensor,
    data_range: float = 1.0,
    window: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> Tensor:
    """Structural similarity [N] of maps ``a`` and ``b`` [N, H, W] (Wang et al. 2004):
    local statistics under an 11-tap Gaussian window (sigma 1.5), C1 = (0.01 L)^2, C2 =
    (0.03 L)^2 with L = ``data_range``, averaged over the positions where the window
    fits in the map."""
    _same_shape(a, b)
    if a.ndim != 3 or min(a.shape[-2:]) < window:
        raise ValueError(
            f"maps: expected [N, H, W] with H, W >= {window}, got {tuple(a.shape)}"
        )
    g = gaussian_window(window, sigma, a.device)
    kernels = (g.view(1, 1, 1, -1), g.view(1, 1, -1, 1))

    def local_mean(x: Tensor) -> Tensor:
        return F.conv2d(F.conv2d(x, kernels[0]), kernels[1])

    x, y = a.double()[:, None], b.double()[:, None]
    mu_x, mu_y = local_mean(x), local_mean(y)
    var_x = local_mean(x * x) - mu_x**2
    var_y = local_mean(y * y) - mu_y**2
    cov = local_mean(x * y) - mu_x * mu_y
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )
    return index.mean(dim=(1, 2, 3))


def _same_shape(a: Tensor, b: Tensor) -> None:
    """Two maps of one shape [N, ...] with N >= 1, on one device, finite (identical maps
    are fine: Spearman 1, SSIM 1; constant ones give a NaN Spearman)."""
    if (
        not isinstance(a, Tensor)
        or not isinstance(b, Tensor)
        or a.shape != b.shape
        or a.ndim < 2
    ):
        shapes = [
            tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            for t in (a, b)
        ]
        raise ValueError(
            "maps: expected two tensors of one shape [N, ...], got "
            f"{shapes[0]} and {shapes[1]}"
        )
    for maps in (a, b):
        checks.check_maps(maps, a.device, "first maps")


# --- model randomisation --------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """Original maps against the maps of one changed model, per image [B]."""

    step: str  # what was changed: the layer re-initialised last, or the training labels
    spearman: Tensor
    ssim: Tensor

    def summary(self) -> dict[str, float]:
        """Means over the images (NaN correlations of constant maps left out) and their
        count."""
        finite = torch.isfinite(self.spearman)
        mean = self.spearman[finite].mean().item() if bool(finite.any()) else math.nan
        return {
            "step": self.step,
            "spearman": mean,
            "ssim": self.ssim.mean().item(),
            "images": int(finite.sum()),
        }


@dataclass(frozen=True)
class SanityResult:
    kind: str  # "cascading", "independent" or "data"
    maps: Tensor  # the trained model's maps [B, H, W]
    classes: Tensor  # [B]: the classes explained, the same for every model
    comparisons: list[Comparison]
    extra: dict | None = None

    def table(self) -> list[dict[str, float]]:
        return [comparison.summary() for comparison in self.comparisons]


def randomisable_layers(model: nn.Module) -> list[str]:
    """Modules holding learned weights (a ``weight`` of 2 or more dimensions:
    convolutions and linear layers), in registration order, which is input to output for
    sequential networks."""
    return [
        name
        for name, module in model.named_modules()
        if name
        and isinstance(getattr(module, "weight", None), Tensor)
        and module.weight.ndim >= 2
        and hasattr(module, "reset_parameters")
    ]


def reinitialise(module: nn.Module, seed: int) -> None:
    """PyTorch's default initialisation of ``module``'s own parameters, drawn on the CPU
    from ``seed`` (the same values on every device), copied in place."""
    fresh = copy.deepcopy(module).cpu()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh.reset_parameters()
    with torch.no_grad():
        for name, value in fresh.named_parameters(recurse=False):
            getattr(module, name).copy_(value)


def _maps(
    model: nn.Module, images: Tensor, method: str, layer: str | None, classes: object
) -> tuple[Tensor, Tensor]:
    exp = explain(model, images, method=method, layers=layer, classes=classes)
    return exp.maps[:, 0], exp.classes[:, 0]


def _randomisation(
    kind: str,
    model: nn.Module,
    images: Tensor,
    method: str,
    layer: str | None,
    classes: object,
    layers: list[str] | None,
    seed: int,
) -> SanityResult:
    names = randomisable_layers(model) if layers is None else list(layers)
    modules = dict(model.named_modules())
    unknown = [
        name
        for name in names
        if name not in modules or not hasattr(modules[name], "reset_parameters")
    ]
    if layers is None and not names:
        raise ValueError(
            "model: expected layers with weights to re-initialise "
            "(convolutions or linear "
            f"layers), got a {type(model).__name__} without any"
        )
    if unknown or not names:
        raise ValueError(
            "layers: expected names of modules with parameters to re-initialise, "
            f"got {unknown or names}"
        )
    original, chosen = _maps(model, images, method, layer, classes)
    randomised = copy.deepcopy(model)
    copies = dict(randomised.named_modules())
    comparisons = []
    for step, name in enumerate(reversed(names)):  # from the top down
        saved = {k: v.clone() for k, v in copies[name].state_dict().items()}
        reinitialise(copies[name], seed + step)
        maps, _ = _maps(randomised, images, method, layer, chosen)
        comparisons.append(
            Comparison(name, spearman(original, maps), ssim(original, maps))
        )
        if kind == "independent":
            copies[name].load_state_dict(saved)
    return SanityResult(kind, original, chosen, comparisons)


def cascading_randomisation(
    model: nn.Module,
    images: Tensor,
    method: str = "gradcam",
    layer: str | None = None,
    classes: object = None,
    layers: list[str] | None = None,
    seed: int = 0,
) -> SanityResult:
    """Re-initialise ``layers`` (default :func:`randomisable_layers`) of a copy of
    ``model`` from the last to the first, cumulatively; after each step, compare its
    maps of the same classes (default: the trained model's predictions) with the trained
    model's. ``method`` and ``layer`` are as in :func:`camlib.explain`."""
    return _randomisation(
        "cascading", model, images, method, layer, classes, layers, seed
    )


def independent_randomisation(
    model: nn.Module,
    images: Tensor,
    method: str = "gradcam",
    layer: str | None = None,
    classes: object = None,
    layers: list[str] | None = None,
    seed: int = 0,
) -> SanityResult:
    """As :func:`cascading_randomisation`, but each step re-initialises one layer only
    (the others keep their trained values)."""
    return _randomisation(
        "independent", model, images, method, layer, classes, layers, seed
    )
