"""Smoke tests of the benchmark scripts in quick mode (a tiny network, seconds): each
checks figures against values derived here from the raw times, or against another
library. Speed targets are reported by the scripts, never tested here.

Cost: about 15 s for family_speed's quick run and 10 s for speed_memory's on an idle
2-core CPU (plus imports); the rest take under a second each."""

from __future__ import annotations

import importlib.util
import inspect
import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"


def load(name: str):
    """A benchmark script as a module (its folder on the path for ``common``)."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def run(script: str, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, str(BENCH / script), "--quick", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done


@pytest.fixture(scope="module")
def family(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("family") / "family.json"
    run("family_speed.py", "--rounds", "2", "--repeats", "2", "--json", str(out))
    return json.loads(out.read_text())


def test_family_speed_has_every_contender_once_per_round(family) -> None:
    peers = {
        "pgc GradCAM",
        "pgc GradCAMPlusPlus",
        "pgc XGradCAM",
        "pgc LayerCAM",
        "pgc HiResCAM",
        "pgc EigenCAM",
        "pgc AblationCAM",
        "pgc ScoreCAM",
        "torchcam CAM",
        "torchcam GradCAM",
        "torchcam GradCAMpp",
        "torchcam XGradCAM",
        "torchcam LayerCAM",
        "torchcam ScoreCAM",
        "Captum LayerGradCam",
    }
    ours = {
        f"camlib {m}"
        for m in (
            "cam",
            "gradcam",
            "gradcampp",
            "xgradcam",
            "layercam",
            "hirescam",
            "eigencam",
            "ablationcam",
            "scorecam",
        )
    }
    names = [row["method"] for row in family["results"]]
    assert sorted(names) == sorted(
        peers | ours | {"plain forward", "camlib ablationcam, tail reruns"}
    )
    for row in family["results"]:
        assert len(row["rounds"]) == 2, row
        assert row["seconds"] == pytest.approx(sum(row["rounds"]) / 2)  # median of two
        assert row["peak_mib"] >= 0


def test_family_speed_ratios_are_medians_of_the_rounds_ratios(family) -> None:
    rounds = {row["method"]: row["rounds"] for row in family["results"]}

    def ratio(a, b) -> float:
        return statistics.median(x / y for x, y in zip(a, b))

    faster = [
        min(p, t) for p, t in zip(rounds["pgc ScoreCAM"], rounds["torchcam ScoreCAM"])
    ]
    summary = family["summary"]
    expected = {
        "Score-CAM: camlib's time / the faster peer's": ratio(
            rounds["camlib scorecam"], faster
        ),
        "Ablation-CAM: pgc's time / camlib's": ratio(
            rounds["pgc AblationCAM"], rounds["camlib ablationcam"]
        ),
        "camlib gradient methods, worst time / plain forward's": max(
            ratio(rounds[f"camlib {m}"], rounds["plain forward"])
            for m in ("gradcam", "gradcampp", "xgradcam", "layercam", "hirescam")
        ),
    }
    for key, value in expected.items():
        assert summary[key] == pytest.approx(value), key
    for target in family["targets"]:
        limit, value = target["limit"], target["value"]
        assert target["passed"] == (
            value <= limit if "<=" in target["target"] else value >= limit
        ), target


def test_family_speed_peers_make_the_maps_camlib_makes(family) -> None:
    """Another library as oracle: the peers' maps of the same method correlate with
    camlib's (r >= 0.99 on every image), so the benchmark times the same computation."""
    rows = {row["method"]: row for row in family["results"]}
    for name in (
        "pgc GradCAM",
        "torchcam GradCAM",
        "Captum LayerGradCam",
        "pgc XGradCAM",
        "pgc ScoreCAM",
        "torchcam ScoreCAM",
        "pgc AblationCAM",
        "camlib ablationcam, tail reruns",
    ):
        assert rows[name]["r_with_camlib"] >= 0.99, rows[name]


def test_tail_reruns_takes_the_path_with_a_pass_per_channel() -> None:
    """With the head made unfindable, Ablation-CAM runs ``fc`` on one row per live
    (image, channel) pair beyond the first pass; with the head found (closed form) it
    runs no more than the first pass."""
    module = load("family_speed")
    torch.manual_seed(0)
    net = module.tiny().eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    rows, seen = [], {}
    net.fc.register_forward_hook(lambda m, a, o: rows.append(a[0].shape[0]))
    net.layer4.register_forward_hook(lambda m, a, o: seen.setdefault("f", o.detach()))
    classes = net(x).argmax(1)
    live = int(seen["f"].flatten(2).ne(0).any(2).sum())
    rows.clear()
    closed = module.camlib.explain(
        net, x, method="ablationcam", layers="layer4", classes=classes
    )
    assert sum(rows) == 2  # the first pass only
    rows.clear()
    tail = module.tail_reruns(net, x, classes)
    assert sum(rows) - 2 - 2 == live  # first pass, the tail's check of the logits
    assert torch.allclose(tail.maps, closed.maps, atol=1e-4)
    restored = importlib.import_module("camlib.explain").find_linear_head
    assert inspect.isfunction(restored)


def test_speed_memory_quick_run(tmp_path: Path) -> None:
    out = tmp_path / "quick.json"
    done = run("speed_memory.py", "--json", str(out))
    assert "| camlib Grad-CAM |" in done.stdout
    assert "| pytorch-grad-cam GradCAM |" in done.stdout
    result = json.loads(out.read_text())
    rows = {row["method"]: row for row in result["results"]}
    plain = statistics.median(rows["plain forward (no_grad)"]["times_ms"])
    for row in rows.values():
        assert row["median_ms"] == pytest.approx(statistics.median(row["times_ms"]))
        assert row["x_plain_time"] == pytest.approx(row["median_ms"] / plain)
    # another library as oracle: pytorch-grad-cam's Grad-CAM maps are camlib's
    assert result["agreement_with_camlib_gradcam"]["pytorch-grad-cam GradCAM"] < 1e-3


def test_readme_table_is_the_generators_output() -> None:
    module = load("make_table")
    text = (BENCH / "README.md").read_text()
    current = module.with_table(text, module.table())
    assert current == text, "run python benchmarks/make_table.py"
    assert len(text.splitlines()) <= 60


def test_table_reads_the_files_present_and_says_which_it_cannot(tmp_path: Path) -> None:
    module = load("make_table")
    results = tmp_path / "cambook" / "results"
    results.mkdir(parents=True)
    meta = {
        "date": "2026-12-05T10:00:00+00:00",
        "device_name": "CPU",
        "threads": 2,
        "other_processes_cpu_share": 0.04,
    }
    target = {"target": "x <= 1", "value": 0.91234, "limit": 1.0, "passed": True}
    (results / "family_speed.json").write_text(
        json.dumps({"meta": meta, "targets": [target], "summary": {}})
    )
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "benchmarks" / "results" / "grading-speed.json").write_text("{}")
    assert module.table(tmp_path).splitlines()[2:] == [
        "| family_speed.py | x <= 1 | 0.912 | met "
        "| 2026-12-05, CPU, 2 threads; other load 4% |",
        "| grading_speed.py | (not read: KeyError 'students') |  |  | ? |",
    ]


def test_other_load_counts_waited_for_children_as_own() -> None:
    """A child process's CPU time, once waited for, is this process's own, not other
    load: after a child that burns about 1 s of CPU, the own count grew by >= 0.8 s."""
    load_ = load("common").OtherLoad()
    before = load_._own()
    burn = (
        "import time\nend = time.process_time() + 1.0\n"
        "while time.process_time() < end: pass"
    )
    subprocess.run([sys.executable, "-c", burn], check=True, timeout=60)
    assert load_._own() - before >= 0.8 * load_.tick


def test_vit_benchmark_quick_mode_runs(tmp_path: Path) -> None:
    """vit_speed.py keeps running: one round of vit_b_16 at batch 1, four contenders
    (about ten vit_b_16 passes, about 30 s of CPU); it writes its JSON where it is
    told."""
    out = tmp_path / "vit.json"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "vit_speed.py"),
            "--quick",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert (
        "| camlib Grad-CAM |" in done.stdout and "| torchcam GradCAM |" in done.stdout
    )
    import json

    rows = {row["method"]: row for row in json.loads(out.read_text())["rows"]}
    assert all(
        row["median_ms"] > 0
        and row["peak_mib"] is not None
        and row["tensor_peak_mib"] > 0
        for row in rows.values()
    )
    assert rows["plain forward (no_grad)"]["x_plain_tensor_memory"] == 1.0
    assert set(rows) == {
        "plain forward (no_grad)",
        "camlib Grad-CAM",
        "pytorch-grad-cam GradCAM",
        "torchcam GradCAM",
    }


def test_tensor_peak_is_the_live_maximum() -> None:
    """The profiler-based peak counts live tensors exactly: 4 MB and 8 MB alive
    together, then the 4 MB freed before a 2 MB one, peak 12 MB (a hand count); the
    tensor returned and dropped by the caller counts while alive. Costs milliseconds."""
    tensor_peak_bytes = load("common").tensor_peak_bytes

    def call() -> torch.Tensor:
        first = torch.empty(1_000_000)  # 4 MB of float32
        second = torch.empty(2_000_000)  # 8 MB
        del first
        third = torch.empty(500_000)  # 2 MB: 10 MB live, below the peak
        del third
        return second

    assert tensor_peak_bytes(call) == 12_000_000
