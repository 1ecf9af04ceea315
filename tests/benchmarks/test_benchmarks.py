"""The benchmark script must keep running (speed targets are reported by it, never tested here)."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_benchmark_quick_mode_runs_and_prints_the_table(tmp_path: Path) -> None:
    out = tmp_path / "quick.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "speed_memory.py"), "--quick", "--json", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| camlib Grad-CAM |" in done.stdout and "| pytorch-grad-cam GradCAM |" in done.stdout
    assert out.exists()


def test_scorecam_overhead_counts_camlibs_passes(tmp_path: Path) -> None:
    """The overhead script's count of the images camlib's Score-CAM forwards matches what camlib
    is meant to run: the first pass of the B images, one masked pass per channel that varies on
    an image, and one shared pass for the constant channels of the batch (counted here from
    layer4 directly); the floors' order alternates as documented."""
    import importlib.util
    import json

    import torch
    import torchvision

    spec = importlib.util.spec_from_file_location(
        "scorecam_overhead", ROOT / "benchmarks" / "scorecam_overhead.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "overhead.json"
    assert module.main(["--size", "48", "--batch-size", "8", "--pairs", "2", "--json",
                        str(out)]) == 0
    result = json.loads(out.read_text())
    torch.manual_seed(0)  # the script's model and images, rebuilt
    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    seen = {}
    model.layer4.register_forward_hook(lambda m, a, o: seen.setdefault("f", o.detach()))
    with torch.no_grad():
        model(x)
    f = seen["f"].flatten(2)
    varying = int((f.amax(2) > f.amin(2)).sum())
    constant = f.shape[0] * f.shape[1] - varying
    expected = 2 + varying + (1 if constant else 0)
    assert 0 < constant and 0 < varying  # both kinds at 48 x 48 (layer4 is 2 x 2)
    assert len(result["pairs"]) == 2
    for record in result["pairs"]:
        assert record["camlib images"] == expected, (record, varying, constant)
        assert 0 < record["camlib outside forwards"] < record["camlib"]
        # the third figure is the random floor scaled to camlib's count of images
        assert record["floor camlib's count"] == pytest.approx(
            record["floor random"] * expected / (2 * 512))
    # the recorded chunk holds camlib's masked images: min-max masks have zeros in them
    assert result["summary"]["zeros in the recorded masked chunk"] > 0
    assert result["meta"]["layout"] == result["meta"]["camlib_layout"]  # the default
    assert [p["floor order"] for p in result["pairs"]] == [["random", "masked"]] * 2
    # pairs 1-8: floors first in odd pairs; random first in pairs 1, 2, 5, 6
    orders = [module.floor_order(j) for j in range(8)]
    assert [o[0][0] for o in orders] == ["floor", "camlib"] * 4
    assert [o[1][0] for o in orders] == ["random"] * 2 + ["masked"] * 2 + ["random"] * 2 + [
        "masked"] * 2
    assert all(sorted(o[1]) == ["masked", "random"] for o in orders)


def test_family_benchmark_times_every_part_before_measuring_memory(tmp_path: Path) -> None:
    """family_speed.py times all parts with glibc's default allocator and no sampling thread,
    then measures the peaks in separate calls: the memory phase starts after part 3's timing,
    every row gets a peak, part 3's per-run records hold the timed calls only (two rounds
    and one ABBA block of two camlib calls, not the memory calls after them), and each floor
    keeps the sweep of batch sizes that chose its own."""
    import json
    import math

    out = tmp_path / "family.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "family_speed.py"), "--quick",
         "--score-rounds", "2", "--score-blocks", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    memory = lines.index("peak memory, in separate calls")
    assert lines.index("part 2: Ablation-CAM") < lines.index("part 3: Score-CAM") < memory
    result = json.loads(out.read_text())
    assert result["meta"]["timing_separate_from_memory"] is True
    assert {row["part"] for row in result["results"]} == {"1", "2", "3"}
    for row in result["results"]:
        assert math.isfinite(row["peak_mib"]) and row["peak_mib"] >= 0, row
    default = next(row for row in result["results"]
                   if row["method"].startswith("camlib scorecam (default"))
    assert len(default["rounds"]) == len(default["layouts_chosen"]) == 2
    assert default["layout_trial_ran"] == [True, False]  # remembered after the first
    assert len(default["x_floor_abba"]) == 1
    assert len(default["layouts_chosen_abba"]) == 2
    # each floor records the sweep that chose its batch size: the fastest rate's
    floors = [row for row in result["results"] if row["method"].startswith("floor: ")
              and row["part"] == "3"]
    assert [f["method"].rsplit(", ", 1)[1] for f in floors] == ["usual layout",
                                                               "channels-last"]
    for floor in floors:
        rates = floor["sweep_images_per_s"]
        assert len(rates) >= 2, rates
        assert f"at batch {max(rates, key=rates.get)}," in floor["method"], (floor, rates)


def test_other_load_counts_waited_for_children_as_own() -> None:
    """A benchmark that runs its contenders in child processes (timing_conditions.py) must
    not report their CPU time as other processes' load: after a child that burns about 1 s
    of CPU has been waited for, this process's own count has grown by at least 0.8 s."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "speed_memory_for_load", ROOT / "benchmarks" / "speed_memory.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    load = module.OtherLoad()
    before = load._own()
    burn = "import time\nend = time.process_time() + 1.0\nwhile time.process_time() < end: pass"
    subprocess.run([sys.executable, "-c", burn], check=True, timeout=60)
    assert load._own() - before >= 0.8 * load.tick


def test_scorecam_batch_balances_the_order_and_reports_ratios(tmp_path: Path) -> None:
    """scorecam_batch.py: over 4 rounds every contender's mean position is the same (rotation
    and reversal), bad batch sizes are refused, and a small run's ratios are its own times'."""
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location(
        "scorecam_batch", ROOT / "benchmarks" / "scorecam_batch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    names = ["floor 8", "camlib 8", "floor 32", "camlib 32"]
    orders = [module.round_order(names, r) for r in range(4)]
    assert all(sorted(order) == sorted(names) for order in orders)
    assert {sum(order.index(n) for order in orders) for n in names} == {6}  # mean 1.5
    with pytest.raises(SystemExit):
        module.main(["--batches", "8"])
    with pytest.raises(SystemExit):
        module.main(["--batches", "8,24"])  # 24 does not divide 1,024
    out = tmp_path / "batch.json"
    assert module.main(["--batches", "256,512", "--rounds", "2", "--size", "32", "--json",
                        str(out)]) == 0
    result = json.loads(out.read_text())
    times = result["times"]
    assert all(len(t) == 2 for t in times.values())
    ratios = result["summary"]["rounds' ratios"]
    expected = [round(c / f, 4) for c, f in zip(times["camlib 512"], times["floor 256"])]
    assert ratios["camlib 512 / floor 256"] == expected


def test_vit_benchmark_quick_mode_runs(tmp_path: Path) -> None:
    """vit_speed.py keeps running: one round of vit_b_16 at batch 1, four contenders (about
    ten vit_b_16 passes, about 30 s of CPU); it writes its JSON where it is told."""
    out = tmp_path / "vit.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "vit_speed.py"), "--quick", "--json",
         str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| camlib Grad-CAM |" in done.stdout and "| torchcam GradCAM |" in done.stdout
    import json

    rows = {row["method"]: row for row in json.loads(out.read_text())["rows"]}
    assert all(row["median_ms"] > 0 and row["peak_mib"] is not None for row in rows.values())
    assert set(rows) == {"plain forward (no_grad)", "camlib Grad-CAM",
                         "pytorch-grad-cam GradCAM", "torchcam GradCAM"}
