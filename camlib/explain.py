"""The pipeline: images -> one forward pass with scoped hooks -> method -> image-sized
maps."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Union

import torch
from torch import Tensor, nn

from . import checks
from .backbones import layer_or_probe
from .checks import Classes
from .capture import (
    ActivationRecorder,
    LayerSwap,
    model_state_preserved,
    resolve_layers,
)
from .layouts import Layout, LayoutOptions, infer_layout
from .methods import LinearHead, Method, MethodInputs, get_method
from .methods.base import find_linear_head
from .postprocess import to_image_maps, zhou_boxes

#: explain's default method: Grad-CAM works on any differentiable model with a spatial
#: layer, and on a layer that feeds GAP + linear its displayed maps are CAM's
DEFAULT_METHOD = "gradcam"
#: a layer: its name, the module itself, or a list mixing both
Layers = Union[str, nn.Module, Sequence[Union[str, nn.Module]]]


@dataclass(frozen=True)
class Explanation:
    r"""Maps for T classes of each of B images (T = 1 unless ``topk`` or ``classes`` ask
    for more), on the input's device.

    Attributes:
        maps: ``[B, T, H, W]`` maps of the first layer at the input's resolution, ready
            to show:
            :math:`\tilde M_c = \operatorname{minmax}(\operatorname{up}(\max(M_c, 0)))`,
            each in :math:`[0, 1]`.
        raw: ``{layer: [B, T, h, w]}``, every layer's maps :math:`M_c` before ReLU,
            upsampling and scaling.
        classes: ``[B, T]`` the class index of each map.
        probabilities: ``[B, T]`` softmax probability :math:`P_c` of each map's class.
        logits: ``[B, num_classes]`` the class scores :math:`S` of the unchanged images.
        method: the method's registered name.
        layers: the layers, in the order of ``raw``.
    """

    maps: Tensor
    raw: dict[str, Tensor]
    classes: Tensor
    probabilities: Tensor
    logits: Tensor
    method: str
    layers: list[str] = field(default_factory=list)

    def maps_for(self, layer: str) -> Tensor:
        """Image-sized, normalised maps ``[B, T, H, W]`` of another captured layer.

        Raises:
            ValueError: ``layer`` was not captured.
        """
        if layer not in self.raw:
            raise ValueError(f"layer: expected one of {list(self.raw)}, got {layer!r}")
        return to_image_maps(self.raw[layer], tuple(self.maps.shape[-2:]))

    def boxes(self, ratio: float = 0.2) -> Tensor:
        """Zhou et al.'s boxes ``[B, T, 4]`` (x0, y0, x1, y1, ends exclusive) of the
        first layer's maps: see :func:`camlib.postprocess.zhou_boxes`."""
        return zhou_boxes(self.maps, ratio)


@dataclass
class Capture:
    """One forward pass: the logits and each recorded layer's output, in the layer's own
    layout; ``layouts`` read each as maps [B, K, h, w] (:meth:`maps`).

    When gradients were tracked, the autograd graph from the layers to the logits is
    alive, and :meth:`gradients` computes (and caches) d logit / d layer output for any
    classes.
    """

    logits: Tensor
    activations: dict[str, Tensor]
    _cached: tuple[Tensor, dict[str, Tensor]] | None = field(default=None, repr=False)
    images: Tensor | None = field(
        default=None, repr=False
    )  # the input, for perturbation methods
    calls: dict[str, int] = field(
        default_factory=dict
    )  # which call of each layer was recorded
    layouts: dict[str, Layout] = field(default_factory=dict)

    def maps(self, layer: str) -> Tensor:
        """The layer's output as feature maps [B, K, h, w], detached."""
        output = self.activations[layer].detach()
        layout = self.layouts.get(layer)
        return output if layout is None else layout.to_maps(output).contiguous()

    @property
    def layers(self) -> list[str]:
        return list(self.activations)

    def gradients(self, classes: Tensor) -> dict[str, Tensor]:
        """``{layer: [B, T, *output shape]}``, in the layer's layout: one backward pass
        per class column, over the head only.

        Images in a batch are independent in eval mode, so summing the chosen logits
        over the batch gives every image its own gradient in one pass. The graph is kept
        for later calls.
        """
        # Cached by identity (no host sync): all layers of one call share the classes
        # tensor.
        if self._cached is None or self._cached[0] is not classes:
            self._cached = (classes, self._compute_gradients(classes))
        return self._cached[1]

    def _compute_gradients(self, classes: Tensor) -> dict[str, Tensor]:
        names = self.layers
        if not self.logits.requires_grad:
            raise ValueError(
                f"layers {names}: no gradient was recorded; capture with "
                "track_gradients=True"
            )
        per_class = []
        for k in range(classes.shape[1]):
            with torch.enable_grad():  # the caller may be under torch.no_grad()
                target = self.logits.gather(1, classes[:, k : k + 1]).sum()
            inputs = [self.activations[n] for n in names]
            per_class.append(
                torch.autograd.grad(
                    target, inputs, retain_graph=True, allow_unused=True
                )
            )
        result = {}
        for i, name in enumerate(names):
            if any(grads[i] is None for grads in per_class):
                raise ValueError(
                    f"layer {name!r}: the logits do not depend on it, so "
                    "there is no gradient"
                )
            result[name] = torch.stack([grads[i] for grads in per_class], dim=1)
        return result


def choose_classes(logits: Tensor, rows: Tensor | None, topk: int) -> Tensor:
    """The requested classes [B, T], checked against the logits, or the top-k
    predictions."""
    num_classes = logits.shape[1]
    if rows is None:
        if topk > num_classes:
            raise ValueError(
                f"topk: expected at most {num_classes} (the number of "
                f"classes), got {topk}"
            )
        return logits.detach().topk(topk, dim=1).indices
    checks.check_class_range(rows, num_classes)
    return rows


def logits_of(output: object) -> Tensor:
    """Class scores from a model output: a tensor, the first tensor of a tuple, or
    ``.logits``."""
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], Tensor):
        output = output[0]
    elif not isinstance(output, Tensor) and isinstance(
        getattr(output, "logits", None), Tensor
    ):
        output = output.logits
    if not isinstance(output, Tensor) or output.ndim != 2:
        got = (
            tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
        )
        raise TypeError(
            f"model output: expected class scores [B, num_classes], got {got}"
        )
    return output


class Explainer:
    """Computes class activation maps of ``model`` with hooks that exist only while in
    use.

    >>> with Explainer(model, method="gradcam", layers=[model.layer3, "layer4"]) as
        explainer:
    ...     exp = explainer(images, topk=3)

    Called outside a ``with`` block, it attaches its hooks for that call only. Arguments
    as in :func:`explain`.
    """

    def __init__(
        self,
        model: nn.Module,
        method: str = DEFAULT_METHOD,
        layers: Layers | None = None,
        batch_size: int | None = None,
        progress: bool = False,
        layout: str | dict[str, str] | None = None,
        reshape: object = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"model: expected a torch.nn.Module, got {type(model).__name__}"
            )
        batch_size = checks.check_batch_size(batch_size)
        self.model = model
        self.method: Method = get_method(method)
        self.batch_size = batch_size
        self.progress = bool(progress)
        self.layers: list[str] | None = (
            None if layers is None else resolve_layers(model, layers)
        )
        self.layout_options = LayoutOptions.checked(layout, reshape, self.layers)
        self._recorder: ActivationRecorder | None = None
        self._heads: dict[str, LinearHead] = {}
        self._inside_block = False

    def __enter__(self) -> Explainer:
        if self._inside_block:
            raise RuntimeError("this Explainer is already in use in a with-block")
        self._inside_block = True
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._inside_block = False
        self.close()

    def close(self) -> None:
        """Remove the hooks; the model is as it was before the Explainer touched it."""
        if self._recorder is not None:
            self._recorder.detach()
            self._recorder = None

    def __call__(
        self, images: Tensor, classes: Classes = None, topk: int | None = None
    ) -> Explanation:
        """Maps of ``images`` for ``classes`` or the ``topk`` classes: see
        :func:`explain`."""
        images = ready_images(self.model, images, self.method)
        if classes is not None and topk is not None:
            raise ValueError(
                "classes and topk: pass one of them (classes picks the "
                "classes to explain, "
                f"topk the k highest-scoring ones), got classes and topk={topk!r}"
            )
        topk = checks.check_topk(1 if topk is None else topk)
        rows = checks.classes_as_rows(classes, images.shape[0], images.device)
        capture = self._capture(images, self.method.needs_gradients)
        classes = choose_classes(capture.logits, rows, topk)
        raw = {
            name: self.raw_maps(capture, name, classes) for name in capture.activations
        }
        logits = capture.logits.detach()
        probabilities = logits.softmax(dim=1).gather(1, classes)
        maps = to_image_maps(raw[capture.layers[0]], tuple(images.shape[-2:]))
        return Explanation(
            maps, raw, classes, probabilities, logits, self.method.name, capture.layers
        )

    def capture(self, images: Tensor, track_gradients: bool | None = None) -> Capture:
        """One forward pass recording every layer; the graph above the layers is kept
        when gradients are tracked (the method's need, unless ``track_gradients`` says
        otherwise)."""
        images = ready_images(self.model, images, self.method)
        return self._capture(
            images,
            self.method.needs_gradients if track_gradients is None else track_gradients,
        )

    def _capture(self, images: Tensor, track_gradients: bool) -> Capture:
        with model_state_preserved(self.model):
            recorder = self._attached_recorder(images)
            try:
                with recorder.recording(track_gradients=track_gradients) as activations:
                    logits = logits_of(self.model(images))
                missing = [
                    name for name in recorder.layer_names if name not in activations
                ]
                if missing:
                    raise ValueError(
                        f"layers {missing} did not run in the forward pass"
                    )
                recorded = {name: activations[name] for name in recorder.layer_names}
                layouts = {
                    name: self._layout(name, output, images)
                    for name, output in recorded.items()
                }
                calls = dict(recorder.calls)
                return Capture(
                    logits, recorded, images=images, calls=calls, layouts=layouts
                )
            finally:
                if not self._inside_block:
                    self.close()

    def raw_maps(
        self,
        capture: Capture,
        layer: str,
        classes: Tensor,
        method: Method | None = None,
    ) -> Tensor:
        """Raw maps [B, T, h, w] of ``layer`` for ``classes`` [B, T] from a capture."""
        method = method or self.method
        activations = capture.maps(layer)
        logits = capture.logits.detach()
        if (method.needs_forward or method.needs_tail) and capture.images is None:
            raise ValueError(
                f"method {method.name!r} reruns the network: the capture must "
                "hold the images"
            )
        tail = None
        layout = capture.layouts.get(layer)
        if method.needs_tail:
            output = capture.activations[layer].detach()
            restore = (
                None
                if layout is None or layout.name == "channels_first"
                else (lambda rows, owners: layout.restore(rows, output[owners]))
            )
            tail = LayerSwap(
                self.model,
                layer,
                capture.calls.get(layer, 1),
                capture.images,
                output,
                logits,
                logits_of,
                restore=restore,
            )
        gradients = None
        if method.needs_gradients:
            gradients = capture.gradients(classes)[layer]
            gradients = gradients if layout is None else layout.to_maps(gradients)
        return method.compute(
            MethodInputs(
                activations=activations,
                classes=classes,
                gradients=gradients,
                head=self._head(
                    layer, activations, capture.logits, required=method.needs_head
                )
                if method.needs_head or method.wants_head
                else None,
                logits=logits,
                images=capture.images if method.needs_forward else None,
                forward=self._forward if method.needs_forward else None,
                tail=tail,
                batch_size=self.batch_size,
                progress=self.progress,
            )
        )

    def _forward(self, images: Tensor) -> Tensor:
        """Logits of a plain forward pass in eval mode, without a graph (hooks left
        disarmed)."""
        with model_state_preserved(self.model), torch.no_grad():
            return logits_of(self.model(images)).detach()

    def _layout(self, name: str, output: Tensor, images: Tensor) -> Layout:
        module = dict(self.model.named_modules())[name]
        return infer_layout(
            name,
            module,
            output,
            self.model,
            tuple(images.shape[-2:]),
            *self.layout_options.for_layer(name),
        )

    def _attached_recorder(self, images: Tensor) -> ActivationRecorder:
        if self._recorder is None:
            if self.layers is None:
                self.layers = [layer_or_probe(self.model, images)]
            self._recorder = ActivationRecorder(self.model, self.layers)
            self._recorder.attach()
        return self._recorder

    def _head(
        self, layer: str, features: Tensor, logits: Tensor, required: bool = True
    ) -> LinearHead | None:
        """The GAP + linear head after ``layer``, checked on this batch; if the layer
        does not feed one, a ValueError when ``required``, else None."""
        if layer not in self._heads:
            try:
                self._heads[layer] = find_linear_head(
                    self.model, layer, features, logits
                )
            except ValueError:
                if required:
                    raise
                return None
        return self._heads[layer]


def ready_images(model: nn.Module, images: object, method: Method) -> Tensor:
    """Checked images, usable for autograd: a gradient method under
    ``torch.inference_mode`` is an error; images made under inference mode are copied
    into ordinary tensors."""
    images = checks.check_images(model, images)
    if torch.is_inference_mode_enabled():
        if method.needs_gradients:
            raise RuntimeError(
                f"method {method.name!r} needs gradients, which torch.inference_mode() "
                "disables: call explain outside inference_mode (it turns "
                "gradients on and off "
                "itself and leaves the model as it was), or use a method "
                "without gradients "
                "(cam, eigencam, scorecam, ablationcam)"
            )
        return images
    return images.clone() if images.is_inference() else images


def explain(
    model: nn.Module,
    images: Tensor,
    method: str = DEFAULT_METHOD,
    layers: Layers | None = None,
    classes: Classes = None,
    topk: int | None = None,
    batch_size: int | None = None,
    progress: bool = False,
    layout: str | dict[str, str] | None = None,
    reshape: object = None,
) -> Explanation:
    r"""Class activation maps of ``images`` under ``model``, batched, on the images'
    device.

    One forward pass (and, for gradient methods, one backward pass per class column)
    with hooks that exist only during the call; the model's training flags,
    ``requires_grad`` and ``.grad`` are left as they were.

    Args:
        model: any ``torch.nn.Module`` returning class scores ``[B, num_classes]`` (or a
            tuple whose first item is, or an object with ``.logits``).
        images: ``[B, C, H, W]`` float tensor, normalised as the model expects.
        method: a name from ``camlib.METHODS``. The default, ``"gradcam"``, works on any
            differentiable model with a spatial layer; on a layer that feeds global
            average pooling and one linear layer it equals CAM divided by :math:`hw`, so
            its displayed maps are CAM's.
        layers: where to take the feature maps: a module name (``"layer4"``), a module
            (``model.layer4``), or a list mixing both. Default:
            :func:`camlib.default_layer` for torchvision's families, else the last layer
            with a 4-D output, found by a probe forward pass.
        classes: which classes to explain: one index for every image, one per image
            ``[B]``, or T per image ``[B, T]`` (list or integer tensor). Default: the
            top ``topk``.
        topk: explain the ``topk`` highest-scoring classes of each image (default 1).
            Give ``classes`` or ``topk``, not both.
        batch_size: for the methods that run the network again, images (Score-CAM) or
            ablated copies per image (Ablation-CAM) per pass. Default: the method's own.
        progress: show a progress bar over those extra passes.
        layout: where the channels are in the layers' outputs: ``"channels_first"``
            ``[B, K, h, w]``, ``"channels_last"`` ``[B, h, w, K]`` (Swin) or
            ``"tokens"`` ``[B, L, K]`` (ViT: class or register tokens first, then the
            patches row by row); one for every layer or a dict by layer name. Default:
            read from the layer's module, the model and the shape (see
            :mod:`camlib.layouts`); a shape that fits both 4-D readings is a ValueError
            that asks for it.
        reshape: a callable turning a layer's output into ``[B, K, h, w]`` (or a dict by
            layer name), for any other layout. Ablation-CAM needs it to only select,
            permute and reshape values.

    Returns:
        An :class:`Explanation` with ``maps`` ``[B, T, H, W]`` in :math:`[0, 1]`,
        ``raw`` maps per layer, ``classes``, ``probabilities`` and ``logits``.

    Raises:
        TypeError: ``model`` is not a module, ``images`` not a float tensor, or an
            argument of the wrong type.
        ValueError: a bad shape, device, class index, layer name or method name, NaN
            input, ``classes`` with ``topk``, ``method="cam"`` on a layer that does not
            feed a GAP + linear head, a layer without spatial axes, an ambiguous layout,
            a token count that is no grid, or a ``reshape`` that does not return ``[B,
            K, h, w]``. The message says what was expected and what came.
        RuntimeError: a gradient method under ``torch.inference_mode()``.
    """
    explainer = Explainer(
        model,
        method=method,
        layers=layers,
        batch_size=batch_size,
        progress=progress,
        layout=layout,
        reshape=reshape,
    )
    return explainer(images, classes=classes, topk=topk)
