"""Layouts: channels-last and token layers read right (hand computations on tiny token
and channels-last networks, and identities with the same network's channels-first layer)
or refused with a clear error. Cost: tiny networks, about 6 s of CPU in all (measured,
imports included)."""

from __future__ import annotations

import pytest
import torch
from helpers import assert_unchanged, snapshot
from torch import nn
from torchvision.ops.misc import Permute

import camlib
from camlib.layouts import infer_layout

ALL_METHODS = [
    "gradcam",
    "gradcampp",
    "xgradcam",
    "layercam",
    "hirescam",
    "eigencam",
    "scorecam",
    "ablationcam",
]


class TokenNet(nn.Module):
    """Patch embedding -> [class token, patch tokens] -> ``norm`` (identity) -> class
    token + mean of the patch tokens -> linear. So ``S_c = w_c . (t + mean_p f_p) +
    b_c`` with ``t`` the class token and ``f_p`` the patch tokens at ``norm``: every
    quantity has a closed form."""

    def __init__(self, channels: int = 6, classes: int = 5, patch: int = 4) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, channels, patch, stride=patch)
        self.class_token = nn.Parameter(torch.randn(1, 1, channels))
        self.norm = nn.Identity()
        self.head = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = self.embed(x).flatten(2).transpose(1, 2)  # [B, hw, K], row by row
        tokens = torch.cat(
            [self.class_token.expand(x.shape[0], -1, -1), patches], dim=1
        )
        tokens = self.norm(tokens)
        return self.head(tokens[:, 0] + tokens[:, 1:].mean(dim=1))


class LastNet(nn.Module):
    """Convolution -> channels-last ``last`` [B, h, w, K] -> mean over the grid ->
    linear.
    """

    def __init__(
        self,
        channels: int = 6,
        classes: int = 5,
        stride: int = 4,
        last: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, channels, stride, stride=stride)
        self.permute = Permute([0, 2, 3, 1])
        self.last = nn.Identity() if last is None else last
        self.head = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.last(self.permute(self.embed(x))).mean(dim=(1, 2)))


def seeded(cls, seed: int = 0, **kwargs) -> nn.Module:
    torch.manual_seed(seed)
    return cls(**kwargs).eval()


def images(batch: int = 2, size: int = 16, seed: int = 1) -> torch.Tensor:
    return torch.randn(
        batch, 3, size, size, generator=torch.Generator().manual_seed(seed)
    )


def patch_maps(model: TokenNet, x: torch.Tensor) -> torch.Tensor:
    """The patch tokens at ``norm`` as maps [B, K, h, w]: the embedding's output."""
    with torch.no_grad():
        return model.embed(x)


def test_gradcam_on_tokens_is_the_hand_computed_map() -> None:
    """dS_c/df_p = w_c / (h w) on every patch token (and w_c on the class token, which
    is no position of the map), so Grad-CAM = sum_k w_ck f_k / (h w), for the top class
    and the runner-up, on every image of the batch."""
    model, x = seeded(TokenNet), images()
    exp = camlib.explain(model, x, "gradcam", layers="norm", topk=2)
    f = patch_maps(model, x)  # [B, K, 4, 4]
    w = model.head.weight.detach()[exp.classes]  # [B, T, K]
    expected = torch.einsum("bkhw,btk->bthw", f, w) / 16
    assert exp.raw["norm"].shape == (2, 2, 4, 4)
    torch.testing.assert_close(exp.raw["norm"], expected, rtol=1e-5, atol=1e-6)


def test_ablation_on_tokens_keeps_the_class_token() -> None:
    """Zeroing channel k in every patch token lowers S_c by w_ck mean_p f_k(p) exactly;
    had the class token been zeroed too, the drop would also hold w_ck t_k."""
    model, x = seeded(TokenNet), images()
    exp = camlib.explain(model, x, "ablationcam", layers="norm", topk=2)
    f = patch_maps(model, x)
    w = model.head.weight.detach()[exp.classes]  # [B, T, K]
    score = exp.logits.gather(1, exp.classes)  # [B, T]
    drops = f.mean(dim=(-2, -1))[:, None, :] * w  # [B, T, K]
    expected = torch.einsum("bkhw,btk->bthw", f, drops / score[..., None])
    torch.testing.assert_close(exp.raw["norm"], expected, rtol=1e-4, atol=1e-5)
    assert model.class_token.detach().abs().min() > 0.01  # the class token matters here


@pytest.mark.parametrize("method", ALL_METHODS)
def test_every_method_on_tokens_equals_the_channels_first_layer(method, device) -> None:
    """The patch tokens at ``norm`` are the embedding's output rearranged: every method
    gives the same maps at both layers, several classes per image, both layers in one
    call."""
    model, x = seeded(TokenNet).to(device), images().to(device)
    classes = torch.tensor([[0, 3], [4, 1]], device=device)
    exp = camlib.explain(model, x, method, layers=["norm", "embed"], classes=classes)
    assert exp.raw["norm"].shape == exp.raw["embed"].shape == (2, 2, 4, 4)
    torch.testing.assert_close(exp.raw["norm"], exp.raw["embed"], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("method", ALL_METHODS + ["cam"])
def test_every_method_on_channels_last_equals_the_channels_first_layer(
    method: str, device
) -> None:
    model, x = seeded(LastNet).to(device), images().to(device)
    exp = camlib.explain(model, x, method, layers=["last", "embed"], topk=2)
    assert exp.raw["last"].shape == (2, 2, 4, 4)
    torch.testing.assert_close(exp.raw["last"], exp.raw["embed"], rtol=1e-4, atol=1e-6)


def test_the_swin_shape_is_read_as_768_channels_on_7_by_7() -> None:
    """[1, 7, 7, 768] (Swin's last stage at 224 x 224) is channels-last: K = 768, never
    7 channels on a 7 x 768 grid; Grad-CAM there is the hand-computed CAM / 49."""
    for last in (nn.Identity(), nn.LayerNorm(768)):
        model, x = (
            seeded(LastNet, channels=768, classes=3, stride=32, last=last),
            images(1, 224),
        )
        exp = camlib.explain(model, x, "gradcam", layers="last", classes=2)
        with torch.no_grad():
            f = model.last(model.permute(model.embed(x)))
        assert f.shape == (1, 7, 7, 768)
        assert exp.raw["last"].shape == (1, 1, 7, 7)
        expected = torch.einsum("bhwk,k->bhw", f, model.head.weight.detach()[2]) / 49
        torch.testing.assert_close(
            exp.raw["last"][:, 0], expected, rtol=1e-4, atol=1e-6
        )


def test_an_ambiguous_shape_is_refused_and_layout_settles_it() -> None:
    """[B, 4, 4, 4] with a channels-last producer in the model: either reading fits a 16
    x 16 image, so the error names the shape and the argument; layout= then gives the
    right map."""
    model, x = seeded(LastNet, channels=4), images()
    before = snapshot(model)
    with pytest.raises(
        ValueError,
        match=r"\(2, 4, 4, 4\).*layout='channels_first' or "
        r"layout='channels_last'",
    ):
        camlib.explain(model, x, "gradcam", layers="last")
    assert_unchanged(model, before)
    exp = camlib.explain(
        model,
        x,
        "gradcam",
        layers=["last", "embed"],
        topk=2,
        layout={"last": "channels_last"},
    )
    torch.testing.assert_close(exp.raw["last"], exp.raw["embed"], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("method", ["gradcam", "ablationcam"])
def test_a_reshape_callable_reads_tokens(method: str, device) -> None:
    model, x = seeded(TokenNet).to(device), images().to(device)

    def reshape(t: torch.Tensor) -> torch.Tensor:
        return t[:, 1:].reshape(t.shape[0], 4, 4, t.shape[2]).permute(0, 3, 1, 2)

    ours = camlib.explain(model, x, method, layers="norm", reshape=reshape, topk=2)
    tokens = camlib.explain(model, x, method, layers="norm", layout="tokens", topk=2)
    torch.testing.assert_close(
        ours.raw["norm"], tokens.raw["norm"], rtol=1e-5, atol=1e-7
    )


def test_token_grid_from_the_patch_size_and_from_the_count() -> None:
    module, output = nn.Identity(), torch.zeros(1, 197, 8)
    plain = nn.Module()
    assert infer_layout("x", module, output, plain, (224, 224)).grid == (14, 14)
    assert infer_layout("x", module, output, plain, (224, 224)).extra == 1
    five = infer_layout(
        "x", module, torch.zeros(1, 201, 8), plain, (224, 224)
    )  # 1 + 4 registers
    assert (five.extra, five.grid) == (5, (14, 14))
    wide = infer_layout("x", module, torch.zeros(1, 1 + 14 * 20, 8), plain, (224, 320))
    assert (wide.extra, wide.grid) == (1, (14, 20))
    vit = nn.Module()
    vit.patch_size = 16
    assert infer_layout("x", module, torch.zeros(1, 197, 8), vit, (224, 224)).grid == (
        14,
        14,
    )


BAD = [
    (
        "reshape returns 3-D",
        dict(layers="norm", reshape=lambda t: t[:, 1:]),
        ValueError,
        r"reshape should turn its output \(2, 17, 6\) into maps \[B, K, h, w\] "
        r"\(4 axes, B = 2\), but it returned a tensor of shape \(2, 16, 6\) "
        r"\(3 axes\); "
        r"for tokens \[B, L, K\], drop the class token",
    ),
    (
        "reshape not callable",
        dict(layers="norm", reshape="tokens"),
        TypeError,
        r"reshape: expected a callable",
    ),
    (
        "unknown layout",
        dict(layers="norm", layout="tokens_first"),
        ValueError,
        r"layout: expected one of \['channels_first', 'channels_last', 'tokens'\]",
    ),
    (
        "layout of the wrong rank",
        dict(layers="norm", layout="channels_last"),
        ValueError,
        r"layout='channels_last' expects a \[B, K, h, w\] or \[B, h, w, K\] output, "
        r"got \(2, 17, 6\)",
    ),
    (
        "classifier",
        dict(layers="head"),
        ValueError,
        r"layer 'head': its output \(2, 5\) has no "
        r"spatial axes",
    ),
    (
        "layout and reshape",
        dict(layers="norm", layout="tokens", reshape=lambda t: t),
        ValueError,
        r"not both",
    ),
]


@pytest.mark.parametrize("method", ["gradcam", "ablationcam"])
@pytest.mark.parametrize(
    "description, kwargs, error, pattern", BAD, ids=[b[0] for b in BAD]
)
def test_bad_layout_input_is_refused_and_the_model_untouched(
    method, description, kwargs, error, pattern
) -> None:
    model = seeded(TokenNet).train()
    before = snapshot(model)
    with pytest.raises(error, match=pattern):
        camlib.explain(model, images(), method, **kwargs)
    assert_unchanged(model, before)


def test_a_token_count_that_is_no_grid_is_refused() -> None:
    """220 tokens on a 224 x 224 image: 196 patches would leave 24 leading tokens (more
    than 16), and no grid of 220 - r patches has the image's shape."""
    model = nn.Sequential(
        nn.Conv2d(3, 8, 16, stride=16),
        nn.Flatten(2),
        nn.Linear(196, 220),
        Permute([0, 2, 1]),
        nn.Identity(),
        Permute([0, 2, 1]),
        nn.AdaptiveAvgPool1d(1),
        nn.Flatten(),
        nn.Linear(8, 3),
    ).eval()
    before = snapshot(model)
    with pytest.raises(
        ValueError,
        match=r"\(1, 220, 8\).*220 is not a grid of patches for a "
        r"224 x 224 image.*reshape=",
    ):
        camlib.explain(model, images(1, 224), "gradcam", layers="4")
    assert_unchanged(model, before)


def test_a_reshape_that_computes_values_cannot_be_ablated() -> None:
    model, x = seeded(TokenNet), images()

    def scaled(t: torch.Tensor) -> torch.Tensor:
        return 2 * t[:, 1:].reshape(t.shape[0], 4, 4, t.shape[2]).permute(0, 3, 1, 2)

    before = snapshot(model)
    with pytest.raises(
        ValueError, match=r"reshape to only select, permute and reshape"
    ):
        camlib.explain(model, x, "ablationcam", layers="norm", reshape=scaled)
    assert_unchanged(model, before)
    assert camlib.explain(model, x, "gradcam", layers="norm", reshape=scaled).raw[
        "norm"
    ].shape == (2, 1, 4, 4)


def test_the_default_layer_of_a_transformer_is_not_its_patch_embedding() -> None:
    model = seeded(TokenNet)
    with pytest.raises(ValueError, match=r"'embed', but later layers output tokens"):
        camlib.explain(model, images(), "gradcam")
    with pytest.raises(
        ValueError, match=r"default_layer knows torchvision's .*TokenNet.*'embed'"
    ):
        camlib.default_layer(model)
