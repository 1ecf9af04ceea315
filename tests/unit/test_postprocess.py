"""Post-processing against hand values and scipy as an oracle."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from camlib.postprocess import (
    colorize,
    connected_components,
    largest_component,
    normalize,
    overlay,
    to_image_maps,
    upsample,
    zhou_boxes,
)


def test_normalize_min_max_and_flat_maps_become_zero(device: torch.device) -> None:
    maps = torch.tensor(
        [[[1.0, 3.0], [2.0, 5.0]], [[4.0, 4.0], [4.0, 4.0]], [[0.0, 0.0], [0.0, 0.0]]],
        device=device,
    )
    kept = maps.clone()
    got = normalize(maps)
    assert torch.equal(maps, kept)  # the input is left as it was
    torch.testing.assert_close(
        got[0], torch.tensor([[0.0, 0.5], [0.25, 1.0]], device=device)
    )
    assert torch.equal(got[1:], torch.zeros_like(got[1:]))
    assert torch.isfinite(got).all()
    # in place: the same numbers, written into the input itself
    same = normalize(maps, inplace=True)
    assert same.data_ptr() == maps.data_ptr() and torch.equal(same, got)


def test_to_image_maps_drops_negative_evidence_then_scales() -> None:
    raw = torch.tensor([[[[-2.0, 1.0], [3.0, -1.0]]]])
    got = to_image_maps(raw, (2, 2))
    torch.testing.assert_close(got, torch.tensor([[[[0.0, 1 / 3], [1.0, 0.0]]]]))
    assert (
        to_image_maps(-raw.abs(), (4, 4)).abs().sum() == 0
    )  # all negative -> zeros, not NaN


def test_upsample_bilinear_matches_hand_interpolation() -> None:
    # align_corners=False: output pixel centres at (i + 0.5) / 2 - 0.5 in input
    # coordinates
    small = torch.tensor([[0.0, 4.0]])
    big = upsample(small[None], (1, 4))[0, 0]
    torch.testing.assert_close(big, torch.tensor([0.0, 1.0, 3.0, 4.0]))


@pytest.mark.parametrize("seed", range(5))
def test_connected_components_agree_with_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    masks = rng.random((3, 20, 25)) > 0.55
    labels = connected_components(torch.from_numpy(masks))
    for mask, ours in zip(masks, labels.numpy()):
        theirs, count = ndimage.label(mask, structure=np.ones((3, 3)))
        assert len(np.unique(ours[mask])) == count
        # same partition: a bijection between label sets
        pairs = set(zip(ours[mask].tolist(), theirs[mask].tolist()))
        assert len(pairs) == count
        assert (ours[~mask] == 0).all()


def test_largest_component_and_zhou_box_on_planted_blobs() -> None:
    maps = torch.zeros(1, 10, 12)
    maps[0, 1:3, 1:3] = 1.0  # strong but small: 4 pixels
    maps[0, 5:9, 4:11] = 0.5  # weaker but large: 28 pixels, above 20% of the max
    maps[0, 0, 11] = 0.1  # below the threshold
    keep = largest_component(maps >= 0.2)
    assert keep.sum() == 28
    assert zhou_boxes(maps).tolist() == [[4, 5, 11, 9]]
    # At a threshold of 0.6 only the strong blob survives.
    assert zhou_boxes(maps, ratio=0.6).tolist() == [[1, 1, 3, 3]]


def test_diagonal_pixels_are_connected() -> None:
    mask = torch.eye(5, dtype=torch.bool)[None]
    assert largest_component(mask).sum() == 5


def test_zhou_box_of_an_all_zero_map_is_the_whole_image() -> None:
    assert zhou_boxes(torch.zeros(2, 3, 6, 8)).tolist() == [[[0, 0, 8, 6]] * 3] * 2


def test_colorize_and_overlay(device: torch.device) -> None:
    import matplotlib

    maps = torch.tensor([[[0.0, 1.0]]], device=device)
    colours = colorize(maps, "viridis")
    expected = torch.tensor(
        np.array([matplotlib.colormaps["viridis"](x)[:3] for x in (0.0, 1.0)]).T,
        dtype=torch.float32,
    )
    torch.testing.assert_close(colours[0].cpu(), expected[:, None, :])
    images = torch.full((1, 3, 1, 2), 0.5, device=device)
    blended = overlay(images, maps, alpha=0.25, cmap="viridis")
    torch.testing.assert_close(blended, 0.75 * images + 0.25 * colours[:, :, :, :])
    with pytest.raises(
        ValueError, match=r"alpha: expected a number in \[0, 1\], got 2"
    ):
        overlay(images, maps, alpha=2)
