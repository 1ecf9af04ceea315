"""Finding layers by name and capturing their outputs with scoped forward hooks."""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager

import torch
from torch import Tensor, nn


def resolve_layers(
    model: nn.Module, layers: str | nn.Module | Sequence[str | nn.Module]
) -> list[str]:
    """The names of ``layers`` in ``model``.

    Args:
        model: the network.
        layers: a module name (``"layer4"``, ``"features.7"``), a module object
            (``model.layer4``), or a list mixing both.

    Returns:
        The distinct names, in the order given.

    Raises:
        TypeError: an entry is neither a name nor a module.
        ValueError: an empty list, an unknown name (with near matches suggested), a
            module that is not part of ``model``, or the same layer twice.
    """
    if isinstance(layers, (str, nn.Module)):
        entries: list = [layers]
    elif isinstance(layers, Sequence):
        entries = list(layers)
    else:
        raise TypeError(
            "layers: expected a module name, a module, or a list of them, "
            f"got {type(layers).__name__}"
        )
    if not entries:
        raise ValueError("layers: expected at least one module name, got an empty list")
    modules = dict(model.named_modules())
    names_of = {id(module): name for name, module in modules.items() if name}
    names = []
    for entry in entries:
        if isinstance(entry, nn.Module):
            if id(entry) not in names_of:
                raise ValueError(
                    f"layers: the {type(entry).__name__} given is not a submodule "
                    "of this model (pass one of model's own modules, e.g. "
                    "model.layer4)"
                )
            names.append(names_of[id(entry)])
            continue
        if not isinstance(entry, str):
            raise TypeError(
                "layers: expected module names (str) or modules, got "
                f"{type(entry).__name__}"
            )
        if entry not in modules or entry == "":
            near = _near_names(entry, [n for n in modules if n])
            hint = f"; did you mean one of {near}?" if near else ""
            raise ValueError(f"layers: the model has no module named {entry!r}{hint}")
        names.append(entry)
    if len(set(names)) != len(names):
        raise ValueError(f"layers: expected distinct layers, got {names}")
    return names


def _near_names(
    name: str, known: list[str], n: int = 5, cutoff: float = 0.5
) -> list[str]:
    """The ``n`` known names most like ``name`` by spelling (difflib's ratio, at least
    ``cutoff``), best first, plus every name tied with the last one kept: a cut inside a
    tie would drop a name exactly as near as one shown."""
    scored = []
    for candidate in known:
        ratio = difflib.SequenceMatcher(None, candidate, name).ratio()
        if ratio >= cutoff:
            scored.append((-ratio, candidate))
    scored.sort()
    if len(scored) > n:
        last = scored[n - 1][0]
        scored = [entry for entry in scored if entry[0] <= last]
    return [candidate for _, candidate in scored]


def find_feature_layer(model: nn.Module, images: Tensor) -> str:
    """Name of the module that produces the last spatial feature map in a forward pass.

    For a network of the form ``features -> global pooling -> classifier`` this is the
    feature map that feeds the pooling. Among modules that finish together (a block and
    its last child), the outermost one is chosen because its hook fires last. If token
    outputs [B, L, K] come after it (a transformer, whose last 4-D map is its patch
    embedding), a ValueError.
    """
    last: list[str] = []
    tokens: list[tuple[str, tuple[int, ...]]] = []

    def remember(name: str):
        def hook(_module: nn.Module, _inputs: tuple, output: object) -> None:
            if (
                isinstance(output, Tensor)
                and output.ndim == 4
                and output.shape[-2:].numel() > 1
            ):
                last[:] = [name]
                tokens.clear()
            elif isinstance(output, Tensor) and output.ndim == 3:
                if output.shape[1] > 1:
                    tokens[:] = [(name, tuple(output.shape))]

        return hook

    handles = [
        m.register_forward_hook(remember(n)) for n, m in model.named_modules() if n
    ]
    try:
        with torch.no_grad():
            model(images[:1])
    finally:
        for handle in handles:
            handle.remove()
    if not last:
        raise ValueError(
            "could not find a layer with a 4-D feature-map output; pass layers=[...]"
        )
    if tokens:
        raise ValueError(
            f"the last 4-D feature map is {last[0]!r}, but later layers output tokens "
            f"(e.g. {tokens[0][0]!r}, {tokens[0][1]}): a transformer. Pass "
            "layers=[...], usually the last block's first norm"
        )
    return last[0]


class ActivationRecorder:
    """Keeps the latest output of each named layer while ``armed``, in the layer's own
    layout (see :mod:`camlib.layouts`, which reads it as maps).

    The recorded value is the layer's output as it was returned, even if the network
    later changes that tensor in place. With ``track_gradients``, the first recorded
    layer becomes the start of the autograd graph (a detached leaf) and grad mode is
    switched on from there: the backbone below runs without a graph, and the parameters'
    ``requires_grad`` is off during the pass (restored after it), so the graph above the
    layer keeps only what the gradients with respect to the layers need.
    """

    def __init__(self, model: nn.Module, layer_names: Sequence[str]) -> None:
        self.model = model
        self.layer_names = list(layer_names)
        self.outputs: dict[str, Tensor] = {}
        self.calls: dict[str, int] = {}  # calls of each layer in the armed pass
        self.track_gradients = False
        self.armed = False
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def attach(self) -> None:
        modules = dict(self.model.named_modules())
        self._handles = [
            modules[n].register_forward_hook(self._hook_for(n))
            for n in self.layer_names
        ]

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.outputs = {}

    def _hook_for(self, name: str):
        def hook(_module: nn.Module, _inputs: tuple, output: object) -> object:
            if not self.armed:
                return None
            self.calls[name] = self.calls.get(name, 0) + 1
            if not isinstance(output, Tensor):
                raise ValueError(
                    f"layer {name!r}: expected a tensor as output ([B, K, h, w], "
                    f"[B, h, w, K] or tokens [B, L, K]), got {type(output).__name__}"
                )
            if self.track_gradients:
                if not output.requires_grad:
                    # Start the graph here: nothing below this layer is recorded by
                    # autograd.
                    torch.set_grad_enabled(True)
                    output = output.detach().requires_grad_(True)
                self.outputs[name] = output
                # The network continues on a copy, so a later in-place op
                # (ReLU(inplace=True), `out += identity`) cannot change the recorded
                # output.
                return output.clone()
            self.outputs[name] = output.detach().clone()
            return None

        return hook

    @contextmanager
    def recording(self, track_gradients: bool) -> Iterator[dict[str, Tensor]]:
        """Arm the hooks for one forward pass; grad mode and the outputs are reset
        afterwards."""
        grad_was_enabled = torch.is_grad_enabled()
        self.outputs = {}
        self.calls = {}
        self.track_gradients = track_gradients
        # Only gradients with respect to the layers are wanted: with the parameters'
        # requires_grad off for the pass, autograd does not save the inputs it would
        # need for the weights' gradients (a linear layer's input, for one).
        frozen = (
            [p for p in self.model.parameters() if p.requires_grad]
            if track_gradients
            else []
        )
        self.armed = True
        torch.set_grad_enabled(False)
        try:
            for parameter in frozen:
                parameter.requires_grad_(False)
            yield self.outputs
        finally:
            for parameter in frozen:
                parameter.requires_grad_(True)
            self.armed = False
            self.outputs = {}
            torch.set_grad_enabled(grad_was_enabled)


class LayerSwap:
    """The network from one layer onward: logits for replacement outputs of that layer.

    ``swap(rows, owners)`` with rows [R, K, h, w], replacement outputs of the layer, and
    owners [R], the image each row belongs to, returns logits [R, num_classes]. A pass
    replaces the layer's output (at its ``call``-th call, the one that was recorded) by
    the rows; the layers before it run on an empty batch, so they cost nothing: the
    price is the network from the layer onward. Before the first pass, one check: the
    recorded output alone must reproduce the recorded logits. If it does not, or a pass
    fails (a skip connection from below the layer meets the larger batch), every pass
    from then on runs the whole network on each row's image, ``max_rows`` rows at a
    time, and ``mode`` becomes ``"full"``; if even that does not reproduce the logits, a
    ValueError.

    ``restore`` puts the rows back into the layer's own layout first (channels-last,
    tokens; see :mod:`camlib.layouts`).
    """

    def __init__(
        self,
        model: nn.Module,
        layer: str,
        call: int,
        images: Tensor,
        activations: Tensor,
        logits: Tensor,
        to_logits,
        max_rows: int = 64,
        restore=None,
    ) -> None:
        self.model, self.layer, self.call = model, layer, call
        # (rows [R, K, h, w], owners [R]) -> rows in the layer's own layout
        self.restore = restore
        self.module = dict(model.named_modules())[layer]
        self.images, self.activations, self.logits = images, activations, logits
        self.to_logits = to_logits
        self.max_rows = max_rows
        self.mode = "unchecked"
        self.passes = 0
        self._session: ExitStack | None = None
        self._seen, self._rows = 0, None

    def __call__(self, rows: Tensor, owners: Tensor) -> Tensor:
        if self.restore is not None:
            rows = self.restore(rows, owners)
        if self.mode == "unchecked":
            if self._reproduces(self.images[:0]):
                self.mode = "tail"
            else:
                self._go_full()
        if self.mode == "tail":
            try:
                logits = self._run(self.images[:0], rows)
                if logits is not None:
                    return logits
            except (RuntimeError, ValueError, IndexError, TypeError):
                pass
            self._go_full()
        parts = []
        for start in range(0, rows.shape[0], self.max_rows):
            part = slice(start, start + self.max_rows)
            logits = self._run(self.images[owners[part]], rows[part])
            if logits is None:
                raise ValueError(
                    f"layer {self.layer!r}: the whole network's pass went wrong"
                )
            parts.append(logits)
        return torch.cat(parts)

    def _go_full(self) -> None:
        if not self._reproduces(self.images):
            raise ValueError(
                f"layer {self.layer!r}: rerunning the network with this layer's output "
                "replaced does not reproduce the model's logits, so its "
                "channels cannot be "
                "ablated"
            )
        self.mode = "full"

    def _reproduces(self, inputs: Tensor) -> bool:
        """Whether the recorded output, swapped in, gives the recorded logits."""
        try:
            logits = self._run(inputs, self.activations)
        except (RuntimeError, ValueError, IndexError, TypeError):
            return False
        if logits is None:
            return False
        reference = self.logits.detach()
        scale = reference.abs().amax().clamp_min(1.0)
        return bool((logits - reference).abs().amax() <= 1e-3 * scale)

    def __enter__(self) -> LayerSwap:
        """Hold the hook, eval mode and no_grad across many passes (each pass would
        otherwise set them up and undo them, which costs about a millisecond on a
        ResNet)."""
        stack = ExitStack()
        stack.enter_context(model_state_preserved(self.model))
        stack.enter_context(torch.no_grad())
        handle = self.module.register_forward_hook(self._replace)
        stack.callback(handle.remove)
        self._session = stack
        return self

    def __exit__(self, *exc_info: object) -> None:
        stack, self._session = self._session, None
        if stack is not None:
            stack.close()

    def _replace(self, _module: nn.Module, _inputs: tuple, _output: object) -> object:
        self._seen += 1
        return self._rows if self._seen == self.call else None

    def _run(self, inputs: Tensor, rows: Tensor) -> Tensor | None:
        """Logits [rows, classes] of one pass with ``rows`` as the layer's output; None
        if the layer was not reached or the logits do not have one row per
        replacement."""
        if getattr(self, "_session", None) is None:
            with self:
                return self._run(inputs, rows)
        self._seen, self._rows = 0, rows
        try:
            logits = self.to_logits(self.model(inputs))
        finally:
            self._rows = None
        self.passes += 1
        if self._seen < self.call or logits.shape[0] != rows.shape[0]:
            return None
        return logits


@contextmanager
def model_state_preserved(model: nn.Module, eval_mode: bool = True) -> Iterator[None]:
    """Put ``model`` in eval mode for the block and restore every module's training
    flag."""
    flags = [(module, module.training) for module in model.modules()]
    if eval_mode:
        model.eval()
    try:
        yield
    finally:
        for module, was_training in flags:
            module.training = was_training
