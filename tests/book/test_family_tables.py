"""Chapter 5's tables and sanity figure merge methods whose maps coincide into one row or
line; checked on tiny inputs whose output is written out by hand. Cost: well under a second."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

from cambook import family, figures  # noqa: E402


def test_identical_rows_share_one_row_labelled_with_both_names() -> None:
    summary = {"cam": {"x": (0.5, 0.1), "y": (2.0, 0.0)},
               "gradcam": {"x": (0.5 + 1e-5, 0.1), "y": (2.0, 0.0)},
               "eigencam": {"x": (0.5, 0.1), "y": (2.1, 0.0)}}
    merged = family.merge_identical(summary, ["x", "y"])
    assert list(merged) == ["CAM, Grad-CAM", "Eigen-CAM"]
    assert merged["CAM, Grad-CAM"] is summary["cam"]
    # a column that is not shown does not keep rows apart
    assert list(family.merge_identical(summary, ["x"])) == ["CAM, Grad-CAM, Eigen-CAM"]


def test_verdict_table_by_hand() -> None:
    values = {"cam": {"A": [0.1, 0.9, 0.5]},
              "gradcam": {"A": [0.1, 0.9, 0.5]},
              "eigencam": {"A": [1.0, 1.0, 0.95]},
              "layercam": {"A": [0.2, 0.3, 0.0]}}
    text, passes = family.verdict_table(values, line=0.8, scope="S",
                                        notes={"eigencam": "no class"})
    assert text == "\n".join([
        "| method | A | scope |",
        "|---|:---|:---|",
        "| CAM, Grad-CAM | passes in 2 of 3 (0.10, 0.90, 0.50) | S |",
        "| Eigen-CAM | **fails** (1.00, 1.00, 0.95) | S; no class |",
        "| LayerCAM | passes (0.20, 0.30, 0.00) | S |",
    ])
    assert passes == {"cam": {"A": 2}, "gradcam": {"A": 2}, "eigencam": {"A": 0},
                      "layercam": {"A": 3}}


def test_sanity_figure_draws_identical_curves_once_with_distinct_styles() -> None:
    steps = {"cam": [("fc", 0.2), ("conv", 0.0)], "gradcam": [("fc", 0.2), ("conv", 0.0)],
             "eigencam": [("fc", 1.0), ("conv", 0.1)]}
    fig = figures.plot_sanity_steps(steps, "t", figures.METHOD_NAMES)
    labelled = {line.get_label(): line.get_linestyle() for line in fig.axes[0].lines
                if not line.get_label().startswith("_")}
    assert labelled == {"CAM, Grad-CAM": "-", "Eigen-CAM": "--"}
