"""The package's shape: imports flow one way (camlib never imports cambook), no import
cycle, the library runs without the book's optional dependencies, and every line of
Python fits in 88 characters."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OPTIONAL = ("matplotlib", "ipywidgets", "scipy", "skimage")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Absolute names of the modules that ``path`` imports, at any depth of its code."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            found.add(prefix)
            found.update(f"{prefix}.{alias.name}" for alias in node.names)
    return found


def graph(package: str) -> dict[str, set[str]]:
    """``{module: the modules of the same package it imports}``, submodules resolved."""
    files = {module_name(p): p for p in (ROOT / package).rglob("*.py")}
    edges = {}
    for name, path in files.items():
        edges[name] = {m for m in imports_of(path) if m in files and m != name}
    return edges


def test_camlib_never_imports_the_book() -> None:
    offenders = {
        module_name(path): sorted(
            m for m in imports_of(path) if m.split(".")[0] == "cambook"
        )
        for path in (ROOT / "camlib").rglob("*.py")
    }
    assert not {k: v for k, v in offenders.items() if v}


def test_the_walker_sees_relative_imports() -> None:
    """Control: the walker resolves ``from ..postprocess import x`` and ``from . import
    y``."""
    found = imports_of(ROOT / "camlib" / "methods" / "perturbation.py")
    assert "camlib.postprocess" in found and "camlib.methods.base" in found
    assert "camlib.methods.gradient" in imports_of(
        ROOT / "camlib" / "methods" / "__init__.py"
    )


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """A cycle among the modules, ignoring a package's imports of its own submodules (an
    ``__init__`` that gathers its submodules is not a cycle with them)."""

    def parent_of(child: str, parent: str) -> bool:
        return child.startswith(parent + ".")

    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if parent_of(nxt, node) or parent_of(node, nxt):
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if not state.get(nxt) and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if not state.get(node) and (cycle := visit(node)):
            return cycle
    return None


@pytest.mark.parametrize("package", ["camlib", "cambook"])
def test_no_import_cycle(package: str) -> None:
    assert find_cycle(graph(package)) is None


def test_the_cycle_finder_finds_a_cycle() -> None:
    """Control: a two-module cycle, as methods <-> perturbation once was, is found."""
    edges = {
        "p.methods": {"p.perturbation"},
        "p.perturbation": {"p.methods"},
        "p": {"p.methods"},
    }
    assert find_cycle(edges) in (
        ["p.methods", "p.perturbation", "p.methods"],
        ["p.perturbation", "p.methods", "p.perturbation"],
    )


BLOCKER = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {optional}:
            raise ImportError(f'{{name}} is blocked for this test')
sys.meta_path.insert(0, Block())
"""

SCRIPT = """
import sys, torch
from torch import nn
import camlib
from camlib import metrics, sanity

torch.manual_seed(0)
net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                    nn.Flatten(), nn.Linear(4, 3)).eval()
images = torch.rand(2, 3, 16, 16)
for method in camlib.METHODS:
    exp = camlib.explain(net, images, method=method, layers="1")
    assert exp.maps.shape == (2, 1, 16, 16), (method, exp.maps.shape)
maps = exp.maps[:, 0]
metrics.perturbation_curve(net, images, maps, mode="deletion", steps=4)
metrics.confidence_change(net, images, maps)
metrics.road(net, images, maps, fractions=(0.5,))
masks = torch.zeros(2, 16, 16, dtype=torch.bool)
masks[:, 4:9, 4:9] = True
metrics.pointing_game(maps, masks)
sanity.ssim(maps, maps.flip(-1)); sanity.spearman(maps, maps.flip(-1))
sanity.cascading_randomisation(net, images, "gradcam", "1")
camlib.overlay(images, maps)
loaded = set(m.split('.')[0] for m in sys.modules)
assert not {optional} & loaded, 'an optional module loaded'
print('ok')
"""


def test_explain_and_the_metrics_run_without_the_optional_dependencies(
    tmp_path: Path,
) -> None:
    (tmp_path / "sitecustomize.py").write_text(BLOCKER.format(optional=set(OPTIONAL)))
    env = {"PYTHONPATH": f"{tmp_path}:{ROOT}", "PATH": "/usr/bin:/bin"}
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(optional=set(OPTIONAL))],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stderr[-2000:]
    # control: the blocker does block
    probe = subprocess.run(
        [sys.executable, "-c", "import matplotlib"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert probe.returncode != 0 and "blocked for this test" in probe.stderr


def test_the_built_in_jet_is_matplotlibs() -> None:
    matplotlib = pytest.importorskip("matplotlib")
    import torch

    from camlib.postprocess import _colour_table

    ours = _colour_table("jet", torch.device("cpu"))
    theirs = matplotlib.colormaps["jet"](torch.linspace(0, 1, 256).numpy())[:, :3]
    torch.testing.assert_close(ours, torch.as_tensor(theirs, dtype=torch.float32))


# --- line length ----------------------------------------------------------------------

MAX_LINE = 88
CODE_DIRS = ("camlib", "cambook", "tools", "benchmarks", "tests")


def long_lines(path: Path, limit: int = MAX_LINE) -> list[int]:
    """Numbers (from 1) of the lines of ``path`` longer than ``limit`` characters."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [number for number, line in enumerate(lines, 1) if len(line) > limit]


def test_the_line_counter_finds_a_long_line(tmp_path: Path) -> None:
    path = tmp_path / "example.py"
    path.write_text("x = 1\n" + "#" * 88 + "\n" + "#" * 89 + "\n", encoding="utf-8")
    assert long_lines(path) == [3]


def test_every_line_of_python_fits_in_88_characters() -> None:
    """Cost: reads about 100 files, well under a second."""
    paths = sorted(p for d in CODE_DIRS for p in (ROOT / d).rglob("*.py"))
    assert len(paths) > 50  # the walk found the code
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in paths
        for number in long_lines(path)
    ]
    assert not offenders, f"lines over {MAX_LINE} characters: " + ", ".join(offenders)
