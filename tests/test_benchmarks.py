"""The benchmark script must keep running (speed targets are reported by it, never tested here)."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_quick_mode_runs_and_prints_the_table(tmp_path: Path) -> None:
    out = tmp_path / "quick.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "speed_memory.py"), "--quick", "--json", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| camlib Grad-CAM |" in done.stdout and "| pytorch-grad-cam GradCAM |" in done.stdout
    assert out.exists()
