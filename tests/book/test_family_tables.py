"""The tables of Chapters 5 and 6 and Chapter 6's sanity figure merge methods whose maps
coincide into one row or line; checked on tiny inputs whose output is written out by
hand. Cost: well under a second."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import torch  # noqa: E402

from cambook import family, figures  # noqa: E402


def test_identical_groups_and_merged_rows() -> None:
    maps = {
        "cam": torch.tensor([0.5, 1.0]),
        "gradcam": torch.tensor([0.5, 1.0 + 1e-6]),
        "eigencam": torch.tensor([0.5, 0.9]),
    }
    groups = family.identical_groups(maps, tol=1e-4)
    assert groups == [["cam", "gradcam"], ["eigencam"]]
    summary = {
        "cam": {"x": (0.5, 0.1)},
        "gradcam": {"x": (0.5, 0.1)},
        "eigencam": {"x": (0.5, 0.1)},
        "random": {"x": (0.9, 0.0)},
    }
    merged = family.merge_identical(summary, groups)
    # rows merge by the maps' groups, not by equal numbers (Eigen-CAM stays apart)
    assert list(merged) == ["CAM, Grad-CAM", "Eigen-CAM", "control: random map"]
    assert merged["CAM, Grad-CAM"] is summary["cam"]
    # a group member missing from the table is left out of the label
    assert list(family.merge_identical({"gradcam": summary["gradcam"]}, groups)) == [
        "Grad-CAM"
    ]


def test_verdict_table_by_hand() -> None:
    values = {
        "cam": {"A": [0.1, 0.9, 0.5]},
        "gradcam": {"A": [0.1, 0.9, 0.5]},
        "eigencam": {"A": [1.0, 1.0, 0.95]},
        "layercam": {"A": [0.2, 0.3, 0.0]},
    }
    text, passes = family.verdict_table(
        values, line=0.8, scope="S", notes={"eigencam": "no class"}
    )
    assert text == "\n".join(
        [
            "| method | A | scope |",
            "|---|:---|:---|",
            "| CAM, Grad-CAM | passes in 2 of 3 (0.10, 0.90, 0.50) | S |",
            "| Eigen-CAM | **fails** (1.00, 1.00, 0.95) | S; no class |",
            "| LayerCAM | passes (0.20, 0.30, 0.00) | S |",
        ]
    )
    assert passes == {
        "cam": {"A": 2},
        "gradcam": {"A": 2},
        "eigencam": {"A": 0},
        "layercam": {"A": 3},
    }


def test_sanity_figure_draws_identical_curves_once_with_distinct_styles() -> None:
    steps = {
        "cam": [("fc", 0.2), ("conv", 0.0)],
        "gradcam": [("fc", 0.2), ("conv", 0.0)],
        "eigencam": [("fc", 1.0), ("conv", 0.1)],
    }
    fig = figures.plot_sanity_steps(steps, "t", figures.METHOD_NAMES)
    labelled = {
        line.get_label(): line.get_linestyle()
        for line in fig.axes[0].lines
        if not line.get_label().startswith("_")
    }
    assert labelled == {"CAM, Grad-CAM": "-", "Eigen-CAM": "--"}
    first, second = fig.axes[0].lines[:2]
    assert first.get_marker() != second.get_marker()
    # two lines, dodged by 0.05 steps: -0.025 and +0.025 around each step
    assert list(first.get_xdata()) == [-0.025, 0.975]
    assert list(second.get_xdata()) == [0.025, 1.025]


def test_verdict_table_and_figure_follow_given_groups() -> None:
    values = {"cam": {"A": [0.1]}, "gradcam": {"A": [0.1]}}
    text, _ = family.verdict_table(values, 0.8, "S", groups=[["cam"], ["gradcam"]])
    assert text.splitlines()[2:] == [
        "| CAM | passes (0.10) | S |",
        "| Grad-CAM | passes (0.10) | S |",
    ]
    steps = {"cam": [("fc", 0.2)], "gradcam": [("fc", 0.2)]}
    fig = figures.plot_sanity_steps(
        steps, "t", figures.METHOD_NAMES, groups=[["cam"], ["gradcam"]]
    )
    assert [line.get_label() for line in fig.axes[0].lines][:2] == ["CAM", "Grad-CAM"]
