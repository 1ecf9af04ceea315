"""Token and channels-last layers against pytorch-grad-cam 1.5.7 (with its documented
``reshape_transform``) and torchcam 0.5 (with its ``reshape_transform`` argument).

Random, seeded weights (no download). The gradient family runs on torchvision's
``vit_b_16`` and ``swin_t`` at 224 x 224, one image, the top class and the runner-up in
one call of each library (pgc: the image twice with one target each). camlib takes one
capture and computes all five methods from it; pgc runs Grad-CAM end to end and its
other four methods' own ``get_cam_image`` on the activations and gradients that run
captured.

Score-CAM and Ablation-CAM run the network once per channel (768 full ``vit_b_16``
passes per image, about 20 minutes of this CPU), so they run on the same torchvision
classes at a small size (``VisionTransformer`` and ``SwinTransformer``, 32 x 32 images,
16 channels); ``CAMLIB_FULL_ORACLES=1`` runs them at full size too. Every model
gets LayerNorm and head weights like a trained one's (see ``trained_like``).

Cost: about 45 s of CPU in all (measured), most of it the two full-size models' passes.
"""

from __future__ import annotations

import os

import pytest
import torch
import torchvision
from torchvision.models.swin_transformer import SwinTransformer
from torchvision.models.vision_transformer import VisionTransformer

import camlib
from camlib.methods import get_method
from camlib.postprocess import normalize, to_image_maps

GRADIENT_FAMILY = ["gradcam", "gradcampp", "xgradcam", "layercam", "hirescam"]
IMAGE = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(5))
SMALL_IMAGE = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(6))
PEERS = ("pgc", "torchcam")


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a = a.flatten(1).double()
    b = b.flatten(1).double()
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))


def agreement(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson's r per row; 1 where both rows are constant (both maps flat: they
    agree)."""
    flat = (a.flatten(1).std(1) == 0) & (b.flatten(1).std(1) == 0)
    return torch.where(flat, torch.ones((), dtype=torch.float64), pearson(a, b))


def vit_reshape(grid: int):
    from pytorch_grad_cam.utils.reshape_transforms import vit_reshape_transform

    return lambda t: vit_reshape_transform(t, grid, grid)


def swin_reshape(grid: int):
    """pgc's documented Swin transform is for token outputs [B, h w, K] (timm);
    torchvision's Swin layers are channels-last [B, h, w, K], so flatten the grid first.
    """
    from pytorch_grad_cam.utils.reshape_transforms import swinT_reshape_transform

    return lambda t: swinT_reshape_transform(t.flatten(1, 2), grid, grid)


def trained_like(model: torch.nn.Module, seed: int, head_std: float) -> torch.nn.Module:
    """Weights a trained transformer's LayerNorms and head would have, not
    initialisation's.

    torchvision initialises ViT's head to zero (every logit 0, every gradient 0) and
    every LayerNorm to weight 1 and bias 0, so a norm's output has zero mean over the
    channels at each position and any map whose channel weights are nearly equal
    (Score-CAM at random logits) is nearly 0, decided by rounding. Here the norms get
    weights 1 + 0.5 N(0, 1) and biases 0.5 N(0, 1), and the last linear layer N(0,
    head_std^2) weights (``head_std`` 0.1 at 768 channels gives logits of a trained
    network's size, about 10).
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.copy_(
                    1 + 0.5 * torch.randn(module.weight.shape, generator=generator)
                )
                module.bias.copy_(
                    0.5 * torch.randn(module.bias.shape, generator=generator)
                )
        head = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
        head.weight.copy_(
            head_std * torch.randn(head.weight.shape, generator=generator)
        )
        if head.bias is not None:
            head.bias.zero_()
    return model.eval()


HEAD_STD = 0.1  # logits of a trained network's size (see trained_like)


def pgc_gradcampp_without_eps() -> type:
    """pgc's GradCAMPlusPlus with its ``eps`` (1e-6, added to the denominator of the
    pixel weights) set to 0: the paper's formula, which camlib computes. At ViT's last
    norm the squared gradients are about 1e-6 at a trained logit scale, so the constant
    would decide the comparison. Built from pgc's own source, with that one constant
    changed.
    """
    import inspect

    import pytorch_grad_cam.grad_cam_plusplus as module

    source = inspect.getsource(module)
    assert source.count("eps = 0.000001") == 1, "pgc's Grad-CAM++ source changed"
    namespace: dict = {}
    exec(
        compile(source.replace("eps = 0.000001", "eps = 0.0"), module.__file__, "exec"),
        namespace,
    )
    return namespace["GradCAMPlusPlus"]


@pytest.fixture(scope="module")
def full_size():
    """name -> (model, layer, pgc's reshape): the layers the peers' guides use."""
    torch.manual_seed(0)
    vit = trained_like(torchvision.models.vit_b_16(weights=None), 1, HEAD_STD)
    torch.manual_seed(0)
    swin = trained_like(torchvision.models.swin_t(weights=None), 1, HEAD_STD)
    return {
        "vit_b_16": (vit, "encoder.layers.encoder_layer_11.ln_1", vit_reshape(14)),
        "swin_t": (swin, "features.7.1.norm2", swin_reshape(7)),
    }


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    vit = VisionTransformer(
        image_size=32,
        patch_size=8,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        mlp_dim=32,
        num_classes=10,
    )
    torch.manual_seed(0)
    swin = SwinTransformer(
        patch_size=[4, 4],
        embed_dim=8,
        depths=[2, 2],
        num_heads=[2, 2],
        window_size=[4, 4],
        num_classes=10,
    )
    # at an initial head's logit scale (std 0.02, as torchvision initialises Swin's
    # head): see
    # tests/unit/test_oracles.py on pgc's align_corners=True masks at sharper logits
    vit, swin = trained_like(vit, 2, 0.02), trained_like(swin, 3, 0.02)
    return {
        "vit": (vit, "encoder.layers.encoder_layer_1.ln_1", vit_reshape(4), 1),
        "swin": (swin, "features.3.1.norm2", swin_reshape(4), 0),
    }


def top_two(model: torch.nn.Module, image: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return (
            model(image).topk(2, dim=1).indices
        )  # [1, 2]: the top class and the runner-up


@pytest.mark.parametrize("arch", ["vit_b_16", "swin_t"])
def test_gradient_family_agrees_with_pytorch_grad_cam_and_torchcam(
    full_size, arch
) -> None:
    import pytorch_grad_cam as pgc
    import torchcam.methods as tc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model, layer, reshape = full_size[arch]
    module = dict(model.named_modules())[layer]
    explainer = camlib.Explainer(model, "gradcam", layers=layer)
    capture = explainer.capture(IMAGE)
    classes = capture.logits.detach().topk(2, dim=1).indices  # [1, 2]
    ours = {
        m: explainer.raw_maps(capture, layer, classes, get_method(m))[0]  # [2, h, w]
        for m in GRADIENT_FAMILY
    }
    grid = (14, 14) if arch == "vit_b_16" else (7, 7)
    assert ours["gradcam"].shape == (2, *grid)
    del capture

    twice = IMAGE.expand(2, -1, -1, -1)
    targets = [ClassifierOutputTarget(int(c)) for c in classes[0]]
    kinds = {
        "gradcampp": pgc_gradcampp_without_eps(),
        "xgradcam": pgc.XGradCAM,
        "layercam": pgc.LayerCAM,
        "hirescam": pgc.HiResCAM,
    }
    with pgc.GradCAM(
        model=model, target_layers=[module], reshape_transform=reshape
    ) as gradcam:
        theirs = torch.from_numpy(gradcam(input_tensor=twice, targets=targets))
        f = gradcam.activations_and_grads.activations[0].numpy()
        g = gradcam.activations_and_grads.gradients[0].numpy()
    mine = to_image_maps(ours["gradcam"][None], (224, 224))[0]
    assert (mine.flatten(1).amax(1) > 0).all(), (
        "a flat map would make the comparison vacuous"
    )
    r = {"gradcam": pearson(mine, theirs)}
    for method, kind in kinds.items():
        # only its formula: get_cam_image on the activations and gradients pgc captured
        with kind(
            model=model, target_layers=[module], reshape_transform=reshape
        ) as other:
            cam = other.get_cam_image(twice, module, targets, f, g, eigen_smooth=False)
        r[method] = pearson(ours[method], torch.from_numpy(cam))  # both before the ReLU
    print(
        arch,
        "pgc",
        {m: [round(float(v), 6) for v in values] for m, values in r.items()},
    )
    for method, values in r.items():
        assert (values >= 0.999).all(), (method, values)

    # torchcam: one forward pass, each extractor backpropagates from its scores
    peers = {"gradcam": tc.GradCAM, "xgradcam": tc.XGradCAM, "layercam": tc.LayerCAM}
    extractors = {
        m: kind(model, target_layer=layer, reshape_transform=reshape)
        for m, kind in peers.items()
    }
    try:
        scores = model(twice)
        for method, extractor in extractors.items():
            (maps,) = extractor(
                class_idx=classes[0].tolist(), scores=scores, retain_graph=True
            )
            r = agreement(normalize(ours[method].clamp_min(0)), maps.detach())
            print(arch, "torchcam", method, [round(float(v), 6) for v in r])
            assert (r >= 0.999).all(), (method, r)
    finally:
        for extractor in extractors.values():
            extractor.remove_hooks()


def zeroing_ablation_layer(leading: int):
    """pgc's ViT ablation layer (the documented one for tokens and channels-last
    layers), with the paper's ablation, zero, where pgc writes min - 1e7 into layers
    that have negative values, and with the ``leading`` class token left as it is, as
    camlib does.
    """
    from pytorch_grad_cam.ablation_layer import AblationLayerVit

    class ZeroPatches(AblationLayerVit):
        def __call__(self, x: torch.Tensor) -> torch.Tensor:
            output = self.activations  # [n, N, K] or [n, h, w, K]
            for i in range(output.size(0)):
                output[i, leading:, ..., self.indices[i]] = 0
            return output

    return ZeroPatches()


def masks_upsampled_as_camlib(size) -> torch.nn.Module:
    """pgc's Score-CAM upsamples its masks with ``UpsamplingBilinear2d``, which aligns
    corners; camlib and torchcam do not. At a trained model's logit scale the channel
    softmax is sharp enough for that to matter (r = 0.988 on swin_t), so the comparison
    gives pgc camlib's interpolation and compares the rest of the method."""
    return torch.nn.Upsample(size=size, mode="bilinear", align_corners=False)


def check_perturbation_methods(
    monkeypatch, model, layer, reshape, leading, image, grid, peers=PEERS
) -> None:
    """camlib's Score-CAM and Ablation-CAM against pgc's (Score-CAM with camlib's mask
    interpolation, Ablation-CAM with the zeroing layer above) and torchcam's Score-CAM,
    for the top class and the runner-up; ``peers`` picks which of the two peers."""
    import pytorch_grad_cam as pgc
    import torchcam.methods as tc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    module = dict(model.named_modules())[layer]
    classes = top_two(model, image)
    twice = image.expand(2, -1, -1, -1)
    targets = [ClassifierOutputTarget(int(c)) for c in classes[0]]
    pgc_methods = [
        ("scorecam", pgc.ScoreCAM, {}),
        (
            "ablationcam",
            pgc.AblationCAM,
            {"ablation_layer": zeroing_ablation_layer(leading)},
        ),
    ]
    for method, kind, extra in pgc_methods if "pgc" in peers else []:
        ours = camlib.explain(model, image, method, layers=layer, classes=classes)
        assert ours.raw[layer].shape == (1, 2, *grid)
        # A class whose raw map is nowhere positive has an all-zero map after the ReLU
        # (Ablation-CAM's runner-up on vit_b_16 with random weights): pgc's must then be
        # all zero too (agreement 1 only if both are flat). At least one map per
        # method must not be flat, or the comparison would be vacuous.
        positive = ours.maps.flatten(2).amax(2)[0] > 0
        assert positive.any(), "every map flat: a vacuous comparison"
        assert (ours.raw[layer][0][~positive] <= 0).all()
        with monkeypatch.context() as patch, kind(
            model=model, target_layers=[module], reshape_transform=reshape, **extra
        ) as reference:
            patch.setattr(torch.nn, "UpsamplingBilinear2d", masks_upsampled_as_camlib)
            theirs = torch.from_numpy(reference(input_tensor=twice, targets=targets))
        r = agreement(ours.maps[0], theirs)
        print("pgc", method, [round(float(v), 6) for v in r])
        assert (r >= 0.99).all(), (method, r)
    if "torchcam" not in peers:
        return
    ours = camlib.explain(model, image, "scorecam", layers=layer, classes=classes)
    with tc.ScoreCAM(
        model,
        target_layer=layer,
        input_shape=tuple(image.shape[1:]),
        reshape_transform=reshape,
    ) as reference:
        with torch.no_grad():
            scores = model(twice)
        (theirs,) = reference(class_idx=classes[0].tolist(), scores=scores)
    r = pearson(normalize(ours.raw[layer][0].clamp_min(0)), theirs)
    print("torchcam scorecam", [round(float(v), 6) for v in r])
    assert (r >= 0.99).all(), ("torchcam scorecam", r)


@pytest.mark.parametrize("arch", ["vit", "swin"])
def test_scorecam_and_ablationcam_agree_with_pytorch_grad_cam(
    monkeypatch, small, arch
) -> None:
    model, layer, reshape, leading = small[arch]
    check_perturbation_methods(
        monkeypatch, model, layer, reshape, leading, SMALL_IMAGE, (4, 4)
    )


@pytest.mark.skipif(
    os.environ.get("CAMLIB_FULL_ORACLES") != "1",
    reason="768 full passes per method and library: set CAMLIB_FULL_ORACLES=1",
)
@pytest.mark.parametrize("peer", PEERS)
@pytest.mark.parametrize("arch", ["swin_t", "vit_b_16"])
def test_scorecam_and_ablationcam_at_full_size(
    monkeypatch, full_size, arch, peer
) -> None:
    """The same comparison on the full-size models, one peer at a time (opt-in: about
    5 minutes of CPU for swin_t and 20 for vit_b_16 on two cores, per peer)."""
    model, layer, reshape = full_size[arch]
    leading, grid = (1, (14, 14)) if arch == "vit_b_16" else (0, (7, 7))
    check_perturbation_methods(
        monkeypatch, model, layer, reshape, leading, IMAGE, grid, peers=(peer,)
    )


def test_cam_on_swin_final_norm_agrees_with_torchcam(small) -> None:
    """Swin's final norm is channels-last and feeds the pooling and one linear layer:
    CAM applies there (the default layer), and equals torchcam's CAM exactly."""
    import torchcam.methods as tc

    model, _, reshape, _ = small["swin"]
    assert camlib.default_layer(model) == "norm"
    ours = camlib.explain(model, SMALL_IMAGE, "cam", topk=2)
    with tc.CAM(
        model,
        target_layer="norm",
        fc_layer="head",
        input_shape=(3, 32, 32),
        reshape_transform=lambda t: t.permute(0, 3, 1, 2),
    ) as reference:
        with torch.no_grad():
            scores = model(SMALL_IMAGE.expand(2, -1, -1, -1))
        (theirs,) = reference(
            class_idx=ours.classes[0].tolist(), scores=scores, normalized=False
        )
    torch.testing.assert_close(ours.raw["norm"][0], theirs, rtol=1e-4, atol=1e-5)
