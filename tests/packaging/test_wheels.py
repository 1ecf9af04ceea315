"""The two distributions as a user gets them: camlib's wheel needs torch, torchvision,
numpy and tqdm only; cambook's wheel carries the book's code and results; both install
in a fresh virtual environment and import from there, not from this checkout."""

from __future__ import annotations

import email
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("wheels")
    source = tmp_path_factory.mktemp(
        "source"
    )  # a copy: building in place leaves build/
    ignore = shutil.ignore_patterns("__pycache__", "build", "*.egg-info")
    for name in ("camlib", "cambook"):
        shutil.copytree(ROOT / name, source / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(source),
            str(source / "cambook"),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    found = {path.name.split("-")[0]: path for path in out.glob("*.whl")}
    assert set(found) == {"camlib", "cambook"}, found
    return found


def metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return email.message_from_bytes(archive.read(name))


def test_camlib_requires_four_packages_and_offers_the_rest_as_extras(wheels) -> None:
    requires = metadata(wheels["camlib"]).get_all("Requires-Dist")
    plain = sorted(
        r.split(">")[0].split("=")[0].split("<")[0] for r in requires if ";" not in r
    )
    assert plain == ["numpy", "torch", "torchvision", "tqdm"]
    extras = {r.split("extra == ")[1].strip("'\"") for r in requires if "extra ==" in r}
    assert extras == {"pretrained", "viz"}


def test_camlib_ships_no_book_code_and_cambook_ships_its_results(wheels) -> None:
    with zipfile.ZipFile(wheels["camlib"]) as archive:
        names = archive.namelist()
    assert not [n for n in names if n.startswith("cambook") or "/results/" in n]
    assert "camlib/methods/gradient.py" in names and "camlib/metrics/road.py" in names
    with zipfile.ZipFile(wheels["cambook"]) as archive:
        names = archive.namelist()
    assert (
        "cambook/results/enhance_seeds.json" in names and "cambook/widgets.py" in names
    )
    assert not [n for n in names if n.startswith("camlib/")]


def test_both_install_in_a_fresh_venv_and_import_from_it(
    wheels, tmp_path: Path
) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            str(wheels["camlib"]),
            str(wheels["cambook"]),
        ],
        check=True,
        capture_output=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin"},
    )
    # The dependencies (torch, ...) come from this environment's site-packages, read as
    # a plain path: its .pth files (the editable installs of this checkout) are not
    # processed.
    site = Path(
        subprocess.run(
            [
                str(python),
                "-c",
                "import sysconfig; print(sysconfig.get_paths()['purelib'])",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    script = (
        "import camlib, cambook, torch; from cambook import data; "
        "from camlib import metrics; "
        "print(camlib.__file__); print(cambook.__file__); "
        "e = camlib.explain(torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), "
        "torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(2, 2)), "
        "torch.rand(1, 3, 8, 8), method='gradcam', layers='0'); "
        "print(tuple(e.maps.shape))"
    )
    run = subprocess.run(
        [str(python), "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.split()
    assert all(line.startswith(str(env_dir)) for line in lines[:2]), lines
    assert lines[2:] == ["(1,", "1,", "8,", "8)"]
