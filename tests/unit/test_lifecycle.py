"""Hooks never leak, the model is left as it was, and Grad-CAM works in awkward
settings."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
import torchvision

import camlib
from helpers import assert_unchanged, hook_count, make_gapnet, random_images, snapshot


@pytest.mark.parametrize("method", ["cam", "gradcam"])
def test_no_hooks_left_after_200_calls_and_nothing_retained(method: str) -> None:
    net = make_gapnet(0)
    images = random_images(0)
    with camlib.Explainer(net, method=method) as explainer:
        first = explainer(images)
        assert hook_count(net) == 1  # hooks live inside the block
    tracked = weakref.ref(first.raw["features"])
    del first
    gc.collect()
    assert tracked() is None, "the explainer kept a reference to a result"
    for _ in range(200):
        camlib.explain(net, images, method=method, topk=2)
    assert hook_count(net) == 0
    gc.collect()
    objects_before = len(gc.get_objects())
    for _ in range(200):
        camlib.explain(net, images, method=method, topk=2)
    gc.collect()
    assert len(gc.get_objects()) - objects_before < 100, (
        "objects accumulate across calls"
    )


def test_hooks_removed_after_an_exception_inside_the_block() -> None:
    net = make_gapnet(1)
    before = snapshot(net)
    with pytest.raises(RuntimeError, match="boom"):
        with camlib.Explainer(net, method="gradcam") as explainer:
            explainer(random_images(1))
            raise RuntimeError("boom")
    assert_unchanged(net, before)


def test_state_restored_when_the_forward_raises() -> None:
    net = make_gapnet(2).train()
    net.fc.weight.requires_grad_(False)
    before = snapshot(net)

    def explode(*_args):
        raise RuntimeError("forward failed")

    handle = net.fc.register_forward_pre_hook(explode)
    with pytest.raises(RuntimeError, match="forward failed"):
        camlib.explain(net, random_images(2), method="gradcam")
    handle.remove()
    assert_unchanged(net, before)
    assert torch.is_grad_enabled()


@pytest.mark.parametrize("method", ["cam", "gradcam"])
def test_training_flags_and_grads_untouched(method: str) -> None:
    net = make_gapnet(3).train()
    net.features[0].weight.requires_grad_(False)
    net(random_images(3)).sum().backward()  # existing .grad values that must survive
    before = snapshot(net)
    exp = camlib.explain(net, random_images(4), method=method)
    assert_unchanged(net, before)
    # maps are computed in eval mode: batch-norm running statistics, not batch
    # statistics
    net.eval()
    torch.testing.assert_close(exp.logits, net(random_images(4)).detach())


def test_gradcam_under_no_grad_and_with_frozen_parameters(device: torch.device) -> None:
    net = make_gapnet(5, device)
    images = random_images(5, device=device)
    expected = camlib.explain(net, images, method="gradcam", topk=2)
    for p in net.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        got = camlib.explain(net, images, method="gradcam", topk=2)
    torch.testing.assert_close(got.raw["features"], expected.raw["features"])
    assert all(not p.requires_grad for p in net.parameters())


def test_gradcam_with_inplace_relus_equals_out_of_place() -> None:
    out_of_place = make_gapnet(6)
    in_place = make_gapnet(6, inplace=True)
    images = random_images(6)
    for layer in ["features.2", "features.4", "features.3"]:
        a = camlib.explain(out_of_place, images, method="gradcam", layers=layer, topk=2)
        b = camlib.explain(in_place, images, method="gradcam", layers=layer, topk=2)
        torch.testing.assert_close(a.raw[layer], b.raw[layer])


def test_grad_mode_is_restored() -> None:
    net = make_gapnet(7)
    with torch.no_grad():
        camlib.explain(net, random_images(7), method="gradcam")
        assert not torch.is_grad_enabled()
    assert torch.is_grad_enabled()


def test_inputs_that_require_grad_are_left_alone() -> None:
    net = make_gapnet(8)
    images = random_images(8).requires_grad_(True)
    camlib.explain(net, images, method="gradcam")
    assert images.grad is None


def test_resnet_with_inplace_relu_inside_blocks() -> None:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    images = torch.randn(2, 3, 64, 64)
    exp = camlib.explain(
        model,
        images,
        method="gradcam",
        layers=["layer3", "layer4.1.relu", "layer4"],
        topk=2,
    )
    # layer4.1.relu is called three times per block; its last call is the block's output
    torch.testing.assert_close(exp.raw["layer4.1.relu"], exp.raw["layer4"])
    assert hook_count(model) == 0


def test_tuple_output_models_use_the_first_element() -> None:
    class TupleNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = make_gapnet(9)

        def forward(self, x):
            return self.inner(x), "aux"

    wrapped = TupleNet().eval()
    images = random_images(9)
    torch.testing.assert_close(
        camlib.explain(wrapped, images, method="gradcam").raw["inner.features"],
        camlib.explain(wrapped.inner, images, method="gradcam").raw["features"],
    )


def test_the_graph_above_the_layer_keeps_no_input_for_the_weights_gradients() -> None:
    """Above the layer: flatten and one linear layer. The gradient with respect to the
    layer's output needs the weight only, so autograd saves no activation (with the
    weight requiring gradients it would save the linear layer's input; the logits, saved
    for picking the class scores, are small). The map is
    still Grad-CAM's, computed here by hand: g = W_c reshaped to [K, h, w]."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Flatten(), torch.nn.Linear(256, 5)
    )
    images = torch.randn(2, 3, 8, 8)
    saved: list[torch.Tensor] = []

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        saved.append(tensor)
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        exp = camlib.explain(net, images, method="gradcam", layers="0", topk=1)
    weights = {p.data_ptr() for p in net.parameters()}
    # the linear layer's input, [2, 256], or the layer's output [2, 4, 8, 8]
    activations = [
        t
        for t in saved
        if t.is_floating_point() and t.data_ptr() not in weights and t.numel() == 512
    ]
    assert activations == []
    assert all(p.requires_grad for p in net.parameters())
    with torch.no_grad():
        f = net[0](images)  # [2, 4, 8, 8]
        g = net[2].weight[exp.classes[:, 0]].reshape(2, 4, 8, 8)
        expected = torch.einsum("bk,bkhw->bhw", g.mean(dim=(2, 3)), f)
    torch.testing.assert_close(exp.raw["0"][:, 0], expected)
