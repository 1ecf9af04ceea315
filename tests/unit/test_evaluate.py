"""python -m camlib.evaluate: one process and two gloo processes give the same numbers
and skip the same bad file; resume."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from camlib import evaluate, evaluate_inputs

ROOT = Path(__file__).resolve().parents[2]
MODEL = "cambook.networks:SmallCNN"


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """2 classes x 4 small synthetic PNGs of varying sizes; boxes for some, a mask for
    one; and a truncated JPEG (circles/bad.jpg, index 4)."""
    root = tmp_path_factory.mktemp("folder")
    generator = np.random.default_rng(0)
    boxes = {}
    for label in ("circles", "squares"):
        (root / "images" / label).mkdir(parents=True)
        (root / "masks" / label).mkdir(parents=True)
        for i in range(4):
            height, width = 32 + 4 * i, 40 - 2 * i
            pixels = generator.integers(0, 255, (height, width, 3), dtype=np.uint8)
            pixels[8:20, 10:24] = (250, 40, 40) if label == "circles" else (40, 40, 250)
            Image.fromarray(pixels).save(root / "images" / label / f"{i}.png")
            if i < 3:
                boxes[f"{label}/{i}.png"] = [[10, 8, 24, 20]] + (
                    [[0, 0, 5, 5]] if i == 1 else []
                )
    mask = np.zeros((44, 34), dtype=np.uint8)
    mask[8:20, 10:24] = 255
    Image.fromarray(mask).save(root / "masks" / "squares" / "3.png")
    Image.fromarray(pixels).save(root / "whole.jpg")
    whole = (root / "whole.jpg").read_bytes()
    (root / "images" / "circles" / "bad.jpg").write_bytes(whole[: len(whole) // 2])
    (root / "boxes.json").write_text(json.dumps(boxes))
    return root


def run(folder: Path, out: Path, processes: int, workers: int) -> dict:
    """One process runs here (one thread, as torchrun gives each of its processes)."""
    arguments = [
        str(folder / "images"),
        "--out",
        str(out),
        "--model",
        MODEL,
        "--image-size",
        "32",
        "--batch-size",
        "2",
        "--chunk-size",
        "3",
        "--workers",
        str(workers),
        "--steps",
        "8",
        "--metrics",
        *evaluate.METRICS,
        "--boxes",
        str(folder / "boxes.json"),
        "--masks",
        str(folder / "masks"),
        "--device",
        "cpu",
    ]
    if processes == 1:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            evaluate.main(arguments)
        finally:
            torch.set_num_threads(threads)
    else:
        launcher = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={processes}",
            "-m",
            "camlib.evaluate",
        ]
        env = os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        completed = subprocess.run(
            launcher + arguments, env=env, capture_output=True, text=True, timeout=240
        )
        assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads((out / "summary.json").read_text())


def records(out: Path) -> list[dict]:
    lines = [
        line
        for path in sorted(out.glob("chunk-*.jsonl"))
        for line in path.read_text().splitlines()
    ]
    return sorted(
        (json.loads(line) for line in lines), key=lambda record: record["index"]
    )


def same(a: list[dict], b: list[dict]) -> bool:
    def key(value):
        return "nan" if isinstance(value, float) and math.isnan(value) else value

    return [{k: key(v) for k, v in r.items()} for r in a] == [
        {k: key(v) for k, v in r.items()} for r in b
    ]


def test_two_gloo_processes_give_the_numbers_of_one_and_a_run_resumes(
    folder, tmp_path, monkeypatch
) -> None:
    single = run(folder, tmp_path / "one", processes=1, workers=0)
    double = run(folder, tmp_path / "two", processes=2, workers=1)
    one, two = records(tmp_path / "one"), records(tmp_path / "two")
    assert [r["index"] for r in one] == [0, 1, 2, 3, 5, 6, 7, 8]  # 4: truncated JPEG
    assert sorted(p.name for p in (tmp_path / "two").glob("chunk-*")) == [
        f"chunk-0000{i}.jsonl" for i in range(3)
    ]
    assert same(one, two) and single == double
    # the bad file (chunk 1: rank 1 of 2) is skipped and recorded alike by 1 and 2
    skipped = (tmp_path / "one" / "skipped.csv").read_text()
    assert skipped == (tmp_path / "two" / "skipped.csv").read_text()
    header, line = skipped.splitlines()
    assert header == "index,path,reason"
    assert line.startswith("4,circles/bad.jpg,OSError: image file is truncated")
    assert single["images"] == 8 and single["skipped"] == 1
    # every metric is there, for both methods; objects known for 7 of 8 images (boxes or
    # mask)
    for method in ("cam", "gradcam"):
        assert {
            f"{method}/{k}"
            for k in (
                "class",
                "prob",
                "deletion_auc",
                "insertion_auc",
                "drop",
                "increase",
                "pointing",
                "iou",
                "road_morf",
                "road_lerf",
            )
        } <= set(one[0])
        assert (
            single[method]["pointing_images"] == 7 and single[method]["iou_images"] == 7
        )
        assert (
            0 <= single[method]["deletion_auc"] <= 1
            and 0 <= single[method]["gt_known"] <= 1
        )
    assert math.isnan(one[3]["cam/pointing"])  # circles/3.png: neither box nor mask
    # resume: a finished chunk is not recomputed (its marked copy survives), a
    # missing one is,
    # and the file recorded as skipped is not read again
    marked = tmp_path / "one" / "chunk-00000.jsonl"
    marked.write_text(marked.read_text().replace('"label": 0', '"label": 0, "kept": 1'))
    for chunk in (1, 2):
        (tmp_path / "one" / f"chunk-0000{chunk}.jsonl").unlink()
    read = []

    def reading(path):
        read.append(Path(path).relative_to(folder / "images").as_posix())
        return original(path)

    original = evaluate_inputs.read_image
    monkeypatch.setattr(evaluate_inputs, "read_image", reading)
    again_summary = run(folder, tmp_path / "one", processes=1, workers=0)
    assert sorted(read) == ["circles/3.png"] + [f"squares/{i}.png" for i in range(4)]
    again = records(tmp_path / "one")
    assert all(r.get("kept") == 1 for r in again[:3])
    assert same([{k: v for k, v in r.items() if k != "kept"} for r in again], one)
    assert (tmp_path / "one" / "skipped.csv").read_text() == skipped
    assert again_summary == single


def test_bad_arguments_are_refused(folder, tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(
            [str(folder / "images"), "--out", str(tmp_path), "--batch-size", "0"]
        )
    assert exit_info.value.code == 2
    assert "--batch-size: expected a positive number, got 0" in capsys.readouterr().err
