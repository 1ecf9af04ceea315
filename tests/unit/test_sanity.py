"""camlib.sanity: Spearman against scipy, SSIM against scikit-image, randomisation on
copies."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from camlib import sanity
from helpers import make_gapnet, random_images


def test_spearman_matches_scipy_with_and_without_ties() -> None:
    from scipy.stats import spearmanr

    generator = torch.Generator().manual_seed(0)
    a = torch.rand(6, 10, 10, generator=generator)
    b = a + 0.5 * torch.rand(6, 10, 10, generator=generator)
    tied_a, tied_b = (
        (a * 4).floor(),
        torch.randint(0, 3, (6, 10, 10), generator=generator).float(),
    )
    for x, y in ((a, b), (tied_a, tied_b), (tied_a, b)):
        ours = sanity.spearman(x, y)
        for i in range(6):
            expected = spearmanr(
                x[i].flatten().numpy(), y[i].flatten().numpy()
            ).statistic
            assert ours[i].item() == pytest.approx(expected, abs=1e-10)


def test_average_ranks_by_hand_and_constant_maps() -> None:
    assert sanity.average_ranks(
        torch.tensor([[10.0, 30.0, 20.0, 30.0, 10.0]])
    ).tolist() == [[1.5, 4.5, 3.0, 4.5, 1.5]]
    assert torch.isnan(sanity.spearman(torch.ones(1, 4, 4), torch.rand(1, 4, 4))).all()


def test_ssim_matches_scikit_image() -> None:
    from skimage.metrics import structural_similarity

    generator = torch.Generator().manual_seed(1)
    a = torch.rand(4, 24, 30, generator=generator)
    b = (a + 0.3 * torch.randn(4, 24, 30, generator=generator)).clamp(0, 1)
    ours = sanity.ssim(a, b)
    for i in range(4):
        expected = structural_similarity(
            a[i].numpy().astype(np.float64),
            b[i].numpy().astype(np.float64),
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1.0,
        )
        assert ours[i].item() == pytest.approx(expected, abs=1e-9)
    assert sanity.ssim(a, a).tolist() == pytest.approx([1.0] * 4)


def test_ssim_refuses_maps_smaller_than_the_window() -> None:
    with pytest.raises(ValueError, match="H, W >= 11"):
        sanity.ssim(torch.rand(2, 7, 7), torch.rand(2, 7, 7))


@pytest.mark.parametrize("method", ["cam", "gradcam"])
def test_randomisation_changes_maps_and_leaves_the_model_alone(method, device) -> None:
    model = make_gapnet(0, device)
    images = random_images(1, batch=4, size=16, device=device)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cascading = sanity.cascading_randomisation(model, images, method=method)
    independent = sanity.independent_randomisation(model, images, method=method)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert all(p.grad is None for p in model.parameters())
    # GapNet's weighted layers from the top: fc, features.3, features.0
    assert [c.step for c in cascading.comparisons] == ["fc", "features.3", "features.0"]
    assert [c.step for c in independent.comparisons] == [
        "fc",
        "features.3",
        "features.0",
    ]
    # the first step of both is the same model (only fc re-initialised, same seed)
    torch.testing.assert_close(
        cascading.comparisons[0].ssim, independent.comparisons[0].ssim
    )
    # the fully randomised model's maps are not the trained one's
    last = cascading.comparisons[-1]
    assert (last.ssim < 0.99).all()
    assert cascading.table()[0]["step"] == "fc" and set(cascading.table()[0]) == {
        "step",
        "spearman",
        "ssim",
        "images",
    }


def test_control_reinitialising_with_the_trained_values_changes_nothing() -> None:
    """A control: if 'randomising' restores the very same weights, maps must match
    exactly."""
    model = make_gapnet(2)
    images = random_images(3, batch=3, size=16)
    trained = {k: v.clone() for k, v in model.fc.state_dict().items()}

    class Same(torch.nn.Linear):
        def reset_parameters(self) -> None:  # "re-initialise" to the trained values
            if hasattr(self, "_trained"):
                self.load_state_dict(self._trained)
            else:
                super().reset_parameters()

    same = Same(8, 5)
    same._trained = trained
    same.load_state_dict(trained)
    model.fc = same
    result = sanity.independent_randomisation(
        model, images, method="cam", layers=["fc"]
    )
    assert result.comparisons[0].ssim.tolist() == pytest.approx([1.0] * 3)
    assert result.comparisons[0].spearman.tolist() == pytest.approx([1.0] * 3)


def test_randomisation_refuses_unknown_layers() -> None:
    with pytest.raises(ValueError, match="layers: expected names of modules"):
        sanity.cascading_randomisation(
            make_gapnet(0), random_images(0, size=16), layers=["nope"]
        )
