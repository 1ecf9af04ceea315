"""``python -m camlib.evaluate`` on real folders: bad files are skipped and recorded,
every usage error is one line (what was expected, what came) with exit status 2.

Tiny images (16 px) and SmallCNN: about 8 CPU-seconds beyond pytest's start, 3 of them
the one real process."""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from camlib import evaluate, evaluate_inputs
from camlib.models import Preprocessing

ROOT = Path(__file__).resolve().parents[2]
MODEL = "cambook.networks:SmallCNN"
FAST = [
    "--model",
    MODEL,
    "--image-size",
    "16",
    "--workers",
    "0",
    "--device",
    "cpu",
    "--steps",
    "2",
    "--batch-size",
    "4",
    "--metrics",
    "deletion",
    "pointing",
    "localisation",
]
PREFIX = "python -m camlib.evaluate: error: "
TRUNCATED = r"^OSError: image file is truncated \(\d+ bytes not processed\)"


def png(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def noise(
    shape: tuple[int, ...], seed: int = 0, dtype=np.uint8, high: int = 255
) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, high, shape, dtype=dtype)


def truncated_jpeg(path: Path) -> Path:
    whole = path.with_suffix(".whole.jpeg")
    Image.fromarray(noise((40, 48, 3))).save(whole)
    data = whole.read_bytes()
    whole.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.fixture(scope="module")
def issue_folder(tmp_path_factory) -> Path:
    """The folder of issue 28: a normal PNG, a grayscale PNG, an RGBA PNG, a 16-bit
    PNG, a 3 x 3 image, a text file and a truncated JPEG."""
    root = tmp_path_factory.mktemp("issue") / "images"
    things = root / "things"
    png(things / "normal.png", noise((40, 48, 3), 1))
    png(things / "gray.png", noise((40, 48), 2))
    png(things / "rgba.png", noise((40, 48, 4), 3))
    png(things / "deep.png", noise((40, 48), 4, np.uint16, 65535))
    png(things / "tiny.png", noise((3, 3, 3), 5))
    (things / "notes.txt").write_text("not an image")
    truncated_jpeg(things / "cut.jpg")
    return root


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    """Two classes of two 20 x 16 images (width x height), a mask for one."""
    base = tmp_path_factory.mktemp("good")
    for label in ("cats", "dogs"):
        for i in range(2):
            png(base / "images" / label / f"{i}.png", noise((16, 20, 3), i))
    mask = np.zeros((16, 20), dtype=np.uint8)
    mask[4:8, 5:10] = 255
    png(base / "masks" / "cats" / "0.png", mask)
    return base


class Bar:
    """Stands in for tqdm and remembers what the bar showed."""

    shown: list[dict] = []

    def __init__(self, *args, **kwargs) -> None:
        self.total, self.done = kwargs.get("total"), 0

    def set_postfix(self, **values) -> None:
        Bar.shown.append(dict(values))

    def update(self, count: int) -> None:
        self.done += count

    def close(self) -> None:
        assert self.done == self.total


def test_the_folder_of_the_issue_runs_to_the_end(
    issue_folder, tmp_path, monkeypatch
) -> None:
    import tqdm.auto

    monkeypatch.setattr(tqdm.auto, "tqdm", Bar)
    Bar.shown = []
    out = tmp_path / "out"
    argv = [str(issue_folder), "--out", str(out), *FAST, "--workers", "1"]
    status = evaluate.main(argv)
    assert status == 0  # what the camlib-evaluate script exits with
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == 5 and summary["skipped"] == 1
    header, *lines = (out / "skipped.csv").read_text().splitlines()
    assert header == "index,path,reason" and len(lines) == 1
    assert re.fullmatch(TRUNCATED.replace("^", "0,things/cut.jpg,"), lines[0]), lines
    paths = [json.loads(line)["path"] for line in (out / "chunk-00000.jsonl").open()]
    assert paths == [
        f"things/{name}.png" for name in ("deep", "gray", "normal", "rgba", "tiny")
    ]
    assert Bar.shown == [{"skipped": 0}, {"skipped": 1}]  # the running count


def test_strict_stops_at_the_first_bad_file(issue_folder, tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        evaluate.main([str(issue_folder), "--out", str(tmp_path), *FAST, "--strict"])
    assert stop.value.code == 1
    err = capsys.readouterr().err
    path = re.escape(str(issue_folder / "things" / "cut.jpg"))
    expected = (
        f"{PREFIX}{path}: expected an image that can be read and decoded, got "
        + TRUNCATED[1:]
        + r" \(--strict stops at the first such file\)\n"
    )
    assert re.fullmatch(expected, err), err


def test_sixteen_bit_grayscale_keeps_its_range(tmp_path) -> None:
    values = np.array([[0, 257, 32768], [65535, 1000, 60000]], dtype=np.uint16)
    image = evaluate_inputs.read_image(png(tmp_path / "deep.png", values))
    expected = torch.from_numpy(values.astype(np.float64) / 65535).float()
    assert image.shape == (1, 3, 2, 3)
    for channel in range(3):
        assert torch.allclose(image[0, channel], expected, atol=1e-7)


def test_boxes_and_masks_follow_the_letterbox(tmp_path) -> None:
    """A 40 x 20 photo letterboxed to 32: scale 0.8, 16 rows high, 8 rows of bar
    above. Box (10, 5, 20, 15) -> (8, 12, 16, 20); the mask of the same rectangle
    covers the same input pixels, 8 x 8 of them."""
    root = tmp_path / "images"
    png(root / "a" / "wide.png", noise((20, 40, 3)))
    mask = np.zeros((20, 40), dtype=np.uint8)
    mask[5:15, 10:20] = 1
    png(tmp_path / "masks" / "a" / "wide.png", mask)
    (tmp_path / "boxes.json").write_text(json.dumps({"a/wide.png": [[10, 5, 20, 15]]}))
    boxed = evaluate_inputs.ObjectFolder(str(root), 32, str(tmp_path / "boxes.json"))[0]
    masked = evaluate_inputs.ObjectFolder(str(root), 32, masks=str(tmp_path / "masks"))[
        0
    ]
    assert boxed["boxes"].tolist() == [[8.0, 12.0, 16.0, 20.0]]
    assert masked["boxes"].tolist() == [[8.0, 12.0, 16.0, 20.0]]
    expected = torch.zeros(32, 32, dtype=torch.bool)
    expected[12:20, 8:16] = True
    assert torch.equal(boxed["mask"], expected) and torch.equal(
        masked["mask"], expected
    )
    assert Preprocessing(size=32).geometry(20, 40) == (0.8, 0.8, 0.0, 8.0)
    assert boxed["pixel_size"].tolist() == pytest.approx([1.25, 1.25])


def test_an_unreadable_mask_skips_its_image(good, tmp_path) -> None:
    masks = tmp_path / "masks" / "dogs"
    masks.mkdir(parents=True)
    (masks / "1.png").write_text("not a png")
    folder = evaluate_inputs.ObjectFolder(
        str(good / "images"), 16, masks=str(tmp_path / "masks")
    )
    assert folder[3] == {
        "index": 3,
        "skipped": "mask dogs/1.png: UnidentifiedImageError: "
        f"cannot identify image file {str(masks / '1.png')!r}",
    }


def test_an_empty_mask_is_no_object(good, tmp_path) -> None:
    png(tmp_path / "masks" / "cats" / "1.png", np.zeros((16, 20), dtype=np.uint8))
    item = evaluate_inputs.ObjectFolder(
        str(good / "images"), 16, masks=str(tmp_path / "masks")
    )[1]
    assert not item["mask"].any() and item["boxes"].isnan().all()


# --- usage errors ---------------------------------------------------------------------


def _empty(tmp: Path, good: Path) -> list[str]:
    (tmp / "empty").mkdir()
    return [str(tmp / "empty")]


def _flat(tmp: Path, good: Path) -> list[str]:
    png(tmp / "flat" / "0.png", noise((8, 8, 3)))
    png(tmp / "flat" / "1.png", noise((8, 8, 3)))
    return [str(tmp / "flat")]


def _no_images(tmp: Path, good: Path) -> list[str]:
    (tmp / "texts" / "a").mkdir(parents=True)
    (tmp / "texts" / "a" / "readme.txt").write_text("no image")
    return [str(tmp / "texts")]


def _with(**files: str):
    """A case with ``good``'s images and extra files (name -> text) passed as
    options."""

    def build(tmp: Path, good: Path) -> list[str]:
        argv = [str(good / "images")]
        for option, text in files.items():
            (tmp / option).write_text(text)
            argv += [f"--{option}", str(tmp / option)]
        return argv

    return build


def _weights(tmp: Path, good: Path) -> list[str]:
    module, _, name = MODEL.partition(":")
    torch.save(
        getattr(importlib.import_module(module), name)(5).state_dict(), tmp / "w.pt"
    )
    return [str(good / "images"), "--weights", str(tmp / "w.pt")]


def _mask_size(tmp: Path, good: Path) -> list[str]:
    png(tmp / "masks" / "dogs" / "0.png", np.ones((8, 8), dtype=np.uint8))
    return [str(good / "images"), "--masks", str(tmp / "masks")]


def _options(*options: str):
    return lambda tmp, good: [str(good / "images"), *options]


USAGE = [
    # (case, argv builder, the message after the prefix, as a regex)
    (
        "no such folder",
        lambda tmp, good: [str(tmp / "nowhere")],
        r"ROOT \S+nowhere: expected a folder of class folders "
        r"\(ROOT/<class>/<image>\), "
        r"got no such folder",
    ),
    (
        "empty folder",
        _empty,
        r"ROOT \S+empty: expected a folder of class folders \(ROOT/<class>/<image>\), "
        r"got an empty folder",
    ),
    (
        "no class folders",
        _flat,
        r"ROOT \S+flat: expected a folder of class folders \(ROOT/<class>/<image>\), "
        r"got no class folders \(2 files\)",
    ),
    (
        "class folders without images",
        _no_images,
        r"ROOT \S+texts: expected image files \(\.jpg \.jpeg \.png .*\) in its class "
        r"folders, "
        r"got none in 1 class folder",
    ),
    (
        "boxes not JSON",
        _with(boxes="{'cats/0.png': [1, 2, 3, 4]}"),
        r"--boxes \S+boxes: expected JSON, got invalid JSON at line 1 column 2 "
        r"\(Expecting property name enclosed in double quotes\)",
    ),
    (
        "boxes not an object",
        _with(boxes="[[1, 2, 3, 4]]"),
        r"--boxes \S+: expected a JSON object \(image path -> \[\[x0, y0, x1, y1\], "
        r"\.\.\.\]\), "
        r"got a JSON list",
    ),
    (
        "a box of 3 numbers",
        _with(boxes='{"cats/0.png": [[1, 2, 3]]}'),
        r"--boxes \S+: expected \[\[x0, y0, x1, y1\], \.\.\.\] of finite numbers with "
        r"x0 < x1 "
        r"and y0 < y1 for 'cats/0.png', got \[\[1, 2, 3\]\]",
    ),
    (
        "an inverted box",
        _with(boxes='{"cats/0.png": [[5, 2, 3, 4]]}'),
        r"--boxes \S+: expected .* for 'cats/0.png', got \[\[5, 2, 3, 4\]\]",
    ),
    (
        "boxes naming no image",
        _with(boxes='{"images/cats/0.png": [[1, 2, 3, 4]]}'),
        r"--boxes \S+: expected keys that are image paths relative to ROOT, such as "
        r"'cats/0.png', got none that names an image \(first key: "
        r"'images/cats/0.png'\)",
    ),
    (
        "a box outside the image",
        _with(boxes='{"cats/1.png": [[1, 2, 21, 4]]}'),
        r"--boxes: expected boxes inside cats/1.png \(0 <= x0 < x1 <= 20, 0 <= y0 < "
        r"y1 <= 16\), "
        r"got \[1, 2, 21, 4\]",
    ),
    (
        "no masks folder",
        _options("--masks", "/nonexistent/masks"),
        r"--masks /nonexistent/masks: expected a folder of PNG masks, got no such "
        r"folder",
    ),
    (
        "a mask of another size",
        _mask_size,
        r"--masks: expected dogs/0.png to be 20 x 16 pixels like its image, got 8 x 8",
    ),
    (
        "weights for another model",
        _weights,
        r"--weights \S+w.pt: expected a state dict for SmallCNN, got 2 tensors of "
        r"another shape "
        r"\(fc.weight \(5, 32\) \(the model's \(2, 32\)\), fc.bias \(5,\) \(the "
        r"model's \(2,\)\)\)",
    ),
    (
        "weights not a torch file",
        _with(weights="hello"),
        r"--weights \S+weights: expected a state dict saved by "
        r"torch.save\(model.state_dict\(\)\), "
        r"got a file torch.load cannot read \(KeyError: 101\)",
    ),
    (
        "no weights file",
        _options("--weights", "/nonexistent/w.pt"),
        r"--weights /nonexistent/w.pt: expected a state dict saved by .*, got no such "
        r"file",
    ),
    (
        "unknown method",
        _options("--methods", "cam", "gradcam2"),
        r"--methods: expected names from \['cam', 'gradcam', .*\], got \['gradcam2'\] "
        r"\(see --help\)",
    ),
    (
        "unknown metric",
        _options("--metrics", "pointing", "accuracy"),
        r"argument --metrics: invalid choice: 'accuracy' \(choose from 'deletion', "
        r"'insertion', "
        r"'confidence', 'pointing', 'localisation', 'road'\) \(see --help\)",
    ),
    (
        "a layer the model does not have",
        _options("--layer", "feature.9"),
        r"--layer: expected one of the model's 15 modules, got 'feature.9'; did you "
        r"mean one of "
        r"\['features.9', 'features.8', 'features.7'\]\?",
    ),
    (
        "a layer without a feature map",
        _options("--layer", "fc"),
        r"--methods cam: layer 'fc': its output \(4, 2\) has no spatial axes; expected "
        r"\[B, K, h, w\], \[B, h, w, K\] or tokens \[B, L, K\]\. .*",
    ),
    (
        "an unknown model name",
        _options("--model", "resnet5"),
        r"--model: expected efficientnet-lite0, a torchvision architecture or "
        r"module:callable, "
        r"got 'resnet5'; did you mean one of \['resnet50', 'resnet152', 'resnet34'\]\?",
    ),
    (
        "a module that does not import",
        _options("--model", "no_such_module:Net"),
        r"--model no_such_module:Net: expected an importable module:callable, got "
        r"ModuleNotFoundError: No module named 'no_such_module'",
    ),
    (
        "a callable that is not there",
        _options("--model", "torch.nn:NoSuchNet"),
        r"--model torch.nn:NoSuchNet: expected a callable 'NoSuchNet' in torch.nn, "
        r"got none",
    ),
    (
        "a factory that returns no module",
        _options("--model", "torch:zeros"),
        r"--model torch:zeros: expected torch:zeros\(2\) to return a torch.nn.Module, "
        r"got Tensor",
    ),
    (
        "a factory that fails",
        _options("--model", "torch.nn:Linear"),
        r"--model torch.nn:Linear: expected a factory taking num_classes, got "
        r"TypeError: "
        r"Linear.__init__\(\) missing 1 required positional argument: 'out_features' "
        r"from "
        r"torch.nn:Linear\(2\)",
    ),
    (
        "a class label the model does not have",
        _options("--num-classes", "1", "--target", "label"),
        r"--methods cam: classes: expected indices in \[0, 0\], got \[1\]",
    ),
    (
        "an unknown device",
        _options("--device", "gpu"),
        r"--device: expected cpu or cuda, got 'gpu'",
    ),
    (
        "--out is a file",
        _options("--out", "/dev/null/out"),
        r"--out /dev/null/out: expected a folder, got NotADirectoryError: .*",
    ),
    (
        "a batch size of 0",
        _options("--batch-size", "0"),
        r"--batch-size: expected a positive number, got 0 \(see --help\)",
    ),
]


@pytest.mark.parametrize("case, build, pattern", USAGE, ids=[case[0] for case in USAGE])
def test_usage_errors_are_one_line_with_status_2(
    case, build, pattern, good, tmp_path, capsys
) -> None:
    argv = build(tmp_path, good)  # its options come last, so they win over FAST's
    with pytest.raises(SystemExit) as stop:
        evaluate.main(
            [
                argv[0],
                "--out",
                str(tmp_path / "out"),
                *FAST,
                "--methods",
                "cam",
                *argv[1:],
            ]
        )
    err = capsys.readouterr().err
    assert stop.value.code == 2
    assert err.count("\n") == 1 and err.startswith(PREFIX), err
    assert re.fullmatch(pattern, err[len(PREFIX) : -1]), err


def test_a_real_process_prints_one_line_and_no_traceback(tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "camlib.evaluate",
            str(tmp_path / "empty"),
            "--out",
            str(tmp_path / "out"),
            "--model",
            MODEL,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == (
        f"{PREFIX}ROOT {tmp_path / 'empty'}: expected a folder of class "
        "folders (ROOT/<class>/<image>), got an empty folder\n"
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_asked_for_on_a_machine_without_it(good, tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        evaluate.main(
            [str(good / "images"), "--out", str(tmp_path), *FAST, "--device", "cuda"]
        )
    assert stop.value.code == 2
    assert capsys.readouterr().err == (
        f"{PREFIX}--device cuda: expected a device here, got no CUDA device\n"
    )
