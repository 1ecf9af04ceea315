"""The chapters as a student runs them: JupyterLab in headless Chromium, Run All,
explore.

The pinned JupyterLab serves copies of notebooks/ on 127.0.0.1 with a token, offline
(jupyterlab_harness.py); jupyterlab.js opens each chapter in one JupyterLab page, runs
all its cells and reads the outputs from the notebook model. In chapter 2 it then drives
the live explorer through its controls: photo, method, layer, top class, "any class"
(typed key by key, then Enter), and Score-CAM at a small layer, timing each change until
the new picture loads. The picture after "type a class, change the photo, type it again"
is checked here against camlib.explain computed independently.

Cost: one run of every chapter (about 80 s of kernel time on 2 cores, the same as the
book's build), plus JupyterLab and Chromium (about 20 s). Skipped without jupyterlab or
node, except under CI=true or CAM_BOOK_REQUIRE_BUILD=1 (the test command), where that is
a failure.
"""

from __future__ import annotations

import base64
import io
import os
import shutil

import numpy as np
import pytest
import torch
from jupyterlab_harness import ROOT, drive, serve

CHAPTERS = sorted((ROOT / "notebooks").glob("*.ipynb"))
EXPLORE = "notebooks/02_principle.ipynb"
STEPS = [
    "photo",
    "method",
    "layer",
    "method: CAM where it is undefined",
    "method back",
    "top class",
    "any class",
    "photo after a typed class",
    "the same class typed again",
    "layer for Score-CAM",
    "method: Score-CAM",
]
pytestmark = pytest.mark.slow


def required() -> bool:
    return any(
        os.environ.get(name, "").lower() in ("1", "true", "yes")
        for name in ("CI", "CAM_BOOK_REQUIRE_BUILD")
    )


@pytest.fixture(scope="module")
def report() -> dict:
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    try:
        import jupyterlab  # noqa: F401
    except ImportError:
        missing.append("jupyterlab (pip install -r requirements.txt)")
    if missing:
        message = f"the JupyterLab test needs {', '.join(missing)}"
        if required():
            pytest.fail(message)
        pytest.skip(message)
    with serve(CHAPTERS) as lab:
        return drive(
            lab,
            {
                "notebooks": [f"notebooks/{path.name}" for path in CHAPTERS],
                "explore": EXPLORE,
            },
            timeout=3600,
        )


def test_every_chapter_runs_all_cells_without_an_error(report: dict) -> None:
    assert [entry["path"] for entry in report["notebooks"]] == [
        f"notebooks/{path.name}" for path in CHAPTERS
    ]
    problems = {}
    for entry in report["notebooks"]:
        code = [cell for cell in entry["cells"] if cell["type"] == "code"]
        errors = {cell["index"]: cell["errors"] for cell in code if cell["errors"]}
        not_run = [cell["index"] for cell in code if not cell["executed"]]
        if errors or not_run or entry["done"] != {"ok": True}:
            problems[entry["path"]] = {
                "errors": errors,
                "not run": not_run,
                "run all": entry["done"],
            }
    assert not problems, problems


def test_the_page_logs_no_error_and_stays_offline(report: dict) -> None:
    found = {
        kind: report[kind]
        for kind in ("errors", "console", "offsite", "failed")
        if report[kind]
    }
    assert not found, found


def test_hidden_checks_show_collapsed(report: dict) -> None:
    for entry in report["notebooks"]:
        hidden = [
            cell for cell in entry["cells"] if cell["hidden"] and cell["type"] == "code"
        ]
        assert hidden, entry["path"]
        assert all(cell["collapsed"] for cell in hidden), (entry["path"], hidden)
        assert not any(
            cell["collapsed"] for cell in entry["cells"] if not cell["hidden"]
        )


@pytest.fixture(scope="module")
def steps(report: dict) -> dict[str, dict]:
    explorer = report["explorer"]
    assert explorer and "failure" not in explorer, explorer
    return {step["name"]: step for step in explorer["steps"]}


def test_every_control_changes_the_picture_and_the_caption(
    steps: dict[str, dict],
) -> None:
    assert list(steps) == STEPS
    for name, step in steps.items():
        assert step["after"]["hash"] != step["before"]["hash"], f"{name}: same picture"
        assert step["after"]["caption"] != step["before"]["caption"], (
            f"{name}: same caption"
        )
    assert "Grad-CAM++" in steps["method"]["after"]["caption"]
    assert "blocks.10" in steps["layer"]["after"]["caption"]
    assert steps["photo"]["after"]["caption"].startswith("espresso")


def test_a_typed_class_acts_on_enter_only(steps: dict[str, dict]) -> None:
    typed = steps["any class"]
    assert typed["whileTyping"] == 0, "the explorer redrew before Enter"
    assert [c["text"].split(" (p=")[0] for c in typed["captions"]] == ["tiger cat"]
    assert typed["after"]["anyClass"] == "tiger cat"


def test_the_typed_class_is_cleared_with_the_photo_and_acts_again(
    steps: dict[str, dict],
) -> None:
    moved = steps["photo after a typed class"]["after"]
    assert moved["anyClass"] == "" and moved["caption"].startswith("Egyptian cat")
    again = steps["the same class typed again"]["after"]
    assert again["anyClass"] == "tiger cat" and again["caption"].startswith("tiger cat")


def test_the_picture_after_typing_again_is_that_class_map(
    report: dict, lite0, photos
) -> None:
    import camlib
    from camlib import models
    from camlib.postprocess import overlay
    from PIL import Image

    display, inputs = photos  # chelsea first
    tiger_cat = models.imagenet_classes().index("tiger cat")
    exp = camlib.explain(
        lite0, inputs[:1], method="gradcampp", layers="blocks.10", classes=tiger_cat
    )
    expected = overlay(display[:1], exp.maps[:, 0], alpha=0.5)[0]
    png = base64.b64decode(report["explorer"]["typedAgain"])
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    shown = torch.from_numpy(pixels.copy()).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(shown, expected, atol=1 / 255 + 1e-6, rtol=0)
    egyptian = camlib.explain(
        lite0,
        inputs[:1],
        method="gradcampp",
        layers="blocks.10",
        classes=models.imagenet_classes().index("Egyptian cat"),
    )
    assert (
        overlay(display[:1], egyptian.maps[:, 0], alpha=0.5)[0] - shown
    ).abs().max() > 0.1


def test_score_cam_says_it_is_computing_and_holds_the_controls(
    steps: dict[str, dict],
) -> None:
    captions = steps["method: Score-CAM"]["captions"]
    busy, done = captions[0], captions[-1]
    assert busy["text"].startswith("Computing Score-CAM") and all(busy["disabled"]), (
        busy
    )
    assert "Score-CAM" in done["text"] and not any(done["disabled"]), done
    for name, step in steps.items():
        if name != "method: Score-CAM":
            assert not any("Computing" in c["text"] for c in step["captions"]), name


def test_a_long_caption_leaves_the_controls_whole(report: dict) -> None:
    layout = report["explorer"]["layout"]
    start, wrapped = layout["start"], layout["longCaption"]
    assert wrapped["captionText"].startswith("CAM is defined only")
    assert wrapped["controls"] == start["controls"], "the controls moved or shrank"
    assert wrapped["caption"]["width"] == start["caption"]["width"]
    for control in wrapped["controls"]:
        assert control["right"] <= wrapped["area"]["right"], control
    assert wrapped["caption"]["right"] <= wrapped["area"]["right"]
