"""Same-size control windows for the real-photo zoom (cambook.zoom)."""

from __future__ import annotations

import pytest
import torch

from camlib import models
from cambook import zoom


def test_sliding_windows_span_the_longer_side() -> None:
    # a 427 x 640 photo, full-height squares: x0 runs from 0 to 640 - 427 = 213 in 4
    # equal steps
    windows = zoom.sliding_windows(427, 427, 640, count=5)
    expected = [[x, 0, x + 427, 427] for x in (0, 53.25, 106.5, 159.75, 213)]
    torch.testing.assert_close(windows, torch.tensor(expected), rtol=0, atol=1e-4)
    tall = zoom.sliding_windows(
        100, 300, 200, count=2
    )  # portrait: windows move down, centred
    torch.testing.assert_close(
        tall, torch.tensor([[50.0, 0, 150, 100], [50, 200, 150, 300]])
    )


def test_sliding_windows_refuse_windows_larger_than_the_photo() -> None:
    with pytest.raises(ValueError, match="side <= 427, got count=8, side=500"):
        zoom.sliding_windows(500, 427, 640)


def test_window_probabilities_repeat_zoom_in_on_its_own_window(lite0) -> None:
    photo = torch.rand(3, 96, 160, generator=torch.Generator().manual_seed(0))
    prep = models.Preprocessing(size=64)
    zoomed = zoom.zoom_in(lite0, photo, prep)
    again = zoom.window_probabilities(lite0, photo, zoomed.window[None], prep)[0]
    torch.testing.assert_close(again, zoomed.after, rtol=1e-4, atol=1e-6)


def test_overlaps_by_hand() -> None:
    window = torch.tensor([0.0, 0, 10, 10])
    windows = torch.tensor(
        [
            [0.0, 0, 10, 10],  # itself: 1
            [5, 0, 15, 10],  # half of each: 50 / (100 + 100 - 50) = 1/3
            [0, 0, 5, 5],  # inside it: 25 / 100
            [20, 20, 30, 30],
        ]
    )  # apart: 0
    expected = torch.tensor([1.0, 1 / 3, 0.25, 0.0])
    torch.testing.assert_close(zoom.overlaps(windows, window), expected)


def test_overlaps_refuse_a_batch_as_the_reference() -> None:
    expected = r"windows \[N, 4\] and one window \[4\], got \(2, 4\) and \(1, 4\)"
    with pytest.raises(ValueError, match=expected):
        zoom.overlaps(torch.zeros(2, 4), torch.zeros(1, 4))


def test_shifted_windows_stay_inside_the_photo() -> None:
    # a full-height window in a 100 x 200 photo can only move sideways
    sideways = zoom.shifted_windows(
        torch.tensor([10.0, 0, 110, 100]), (-1, 0, 1), 100, 200
    )
    torch.testing.assert_close(
        sideways,
        torch.tensor([[9.0, 0, 109, 100], [10, 0, 110, 100], [11, 0, 111, 100]]),
    )
    # a window in the top-left corner moves right and down only: (dx, dy) in {0, 2} x
    # {0, 2}
    corner = zoom.shifted_windows(torch.tensor([0.0, 0, 50, 50]), (-2, 0, 2), 100, 100)
    expected = [[0.0, 0, 50, 50], [2, 0, 52, 50], [0, 2, 50, 52], [2, 2, 52, 52]]
    torch.testing.assert_close(corner, torch.tensor(expected))
    # the whole photo cannot move at all
    whole = zoom.shifted_windows(torch.tensor([0.0, 0, 64, 64]), (-1, 0, 1), 64, 64)
    assert whole.tolist() == [[0.0, 0.0, 64.0, 64.0]]
