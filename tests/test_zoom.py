"""Same-size control windows for the real-photo zoom (camlib.zoom)."""
from __future__ import annotations

import pytest
import torch

from camlib import enhance, models, zoom


def test_sliding_windows_span_the_longer_side() -> None:
    # a 427 x 640 photo, full-height squares: x0 runs from 0 to 640 - 427 = 213 in 4 equal steps
    windows = zoom.sliding_windows(427, 427, 640, count=5)
    expected = [[x, 0, x + 427, 427] for x in (0, 53.25, 106.5, 159.75, 213)]
    torch.testing.assert_close(windows, torch.tensor(expected), rtol=0, atol=1e-4)
    tall = zoom.sliding_windows(100, 300, 200, count=2)  # portrait: windows move down, centred
    torch.testing.assert_close(tall, torch.tensor([[50.0, 0, 150, 100], [50, 200, 150, 300]]))


def test_sliding_windows_refuse_windows_larger_than_the_photo() -> None:
    with pytest.raises(ValueError, match="side <= 427, got count=8, side=500"):
        zoom.sliding_windows(500, 427, 640)


def test_window_probabilities_repeat_zoom_in_on_its_own_window(lite0) -> None:
    photo = torch.rand(3, 96, 160, generator=torch.Generator().manual_seed(0))
    prep = models.Preprocessing(size=64)
    zoomed = enhance.zoom_in(lite0, photo, prep)
    again = zoom.window_probabilities(lite0, photo, zoomed.window[None], prep)[0]
    torch.testing.assert_close(again, zoomed.after, rtol=1e-4, atol=1e-6)
