"""What Chapter 4 says of its random crop.

Its window has the same side as the CAM window, and its top-left corner is uniform
over every position that keeps it inside the scene, x and y drawn independently.
Cost: 20,000 random windows (milliseconds)."""
from __future__ import annotations

import torch

from cambook import crops


def test_random_windows_are_uniform_over_the_positions_inside_the_scene() -> None:
    count, side, size = 20_000, 28.0, 128
    windows = crops.random_windows(torch.full((count,), side), size,
                                   torch.Generator().manual_seed(0))
    sides = windows[:, 2:] - windows[:, :2]
    torch.testing.assert_close(sides, torch.full((count, 2), side))
    room = size - side  # the top-left corner may lie anywhere in [0, room]
    for axis in (0, 1):
        u = (windows[:, axis] / room).sort().values
        assert u.min() >= 0 and u.max() <= 1
        # Kolmogorov-Smirnov distance to U(0, 1); 0.0138 is its 0.1% critical value here
        ecdf = torch.arange(1, count + 1, dtype=u.dtype) / count
        assert (ecdf - u).abs().max() < 0.0138
    x, y = windows[:, 0] - windows[:, 0].mean(), windows[:, 1] - windows[:, 1].mean()
    assert abs(float((x * y).mean() / (x.std() * y.std()))) < 0.03  # independent axes


def test_accuracy_bars_take_their_kind_colour_and_legend() -> None:
    """Each bar gets its kind's colour; the legend lists each non-empty label once and
    the one-in-two line. Costs milliseconds."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgba

    from cambook import figures

    summary = {
        "accuracy: global view": {"fused": {"mean": 0.5, "std": 0.01}},
        "accuracy: CAM box crop": {"fused": {"mean": 0.9, "std": 0.02}},
        "accuracy: CAM peak window": {"fused": {"mean": 0.95, "std": 0.02}},
    }
    kinds = {
        "global view": ("tab:grey", "global view alone"),
        "CAM box crop": ("tab:blue", "placed by the map"),
        "CAM peak window": ("tab:blue", ""),
    }
    fig = figures.plot_accuracy_bars(summary, "fused", "t", kinds=kinds)
    bars = fig.axes[0].patches  # drawn bottom-up: the summary's order reversed
    expected = ["tab:blue", "tab:blue", "tab:grey"]
    assert [bar.get_facecolor()[:3] for bar in bars] == [
        to_rgba(c)[:3] for c in expected
    ]
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["global view alone", "placed by the map", "one in two"]
    plt.close(fig)
