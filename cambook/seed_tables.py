"""The tables of Chapters 5 and 6 for one scene network, and the command line that
computes them for more seeds than the chapters' time budget allows.

Chapters 5 and 6 train and measure seed 0 live and read seeds 1 and 2 from
``cambook/results/family_seeds.json``, written by::

    python -m cambook.seed_tables --seeds 1 2 --json cambook/results/family_seeds.json

Every seed's tables are those of :func:`tables`: the same functions the chapter calls,
with the same settings, which the file records (``meta.settings``) and the chapter
checks. ``tests/book/test_seed_tables.py`` reruns seed 1 and compares it with the file.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import time
from collections.abc import Sequence

import torch

from . import compare, family
from .provenance import record, write

# the layers of the scene network's depth comparison: module name -> what it is
DEPTHS = {
    "features.2": "32 x 32, first block",
    "features.5": "16 x 16, second block",
    "features": "16 x 16, last block",
}
DEPTH_METHODS = ("gradcam", "layercam")


def tables(task: compare.SceneTask) -> dict:
    """All the per-seed tables of Chapters 5 and 6 for one trained scene task,
    JSON-ready: the test accuracy, the two-instance table, mass on the object by depth,
    the flatten + linear head, every metric on every method (with the controls), and
    the sanity checks (the table and the cascading steps)."""
    checks = compare.sanity_table(task)
    return {
        "seed": task.seed,
        "accuracy": task.accuracy,
        "instances": family.instance_table(task),
        "depths": family.layer_table(task, list(DEPTHS), list(DEPTH_METHODS)),
        "heads": family.head_table(task),
        "metrics": compare.metric_table(task, controls=True),
        "sanity": {
            "table": checks.table,
            "steps": {m: [list(step) for step in s] for m, s in checks.steps.items()},
        },
    }


def sanity_of(entry: dict) -> compare.Sanity:
    """The :class:`cambook.compare.Sanity` of one seed read back from the file."""
    steps = {
        m: [tuple(step) for step in s] for m, s in entry["sanity"]["steps"].items()
    }
    return compare.Sanity(entry["sanity"]["table"], steps)


def _defaults(function) -> dict:
    """The keyword defaults of ``function`` (numbers, strings and tuples),
    JSON-ready."""
    return {
        name: list(p.default) if isinstance(p.default, tuple) else p.default
        for name, p in inspect.signature(function).parameters.items()
        if isinstance(p.default, (int, float, str, tuple))
        and not isinstance(p.default, bool)
    }


# what a seed's tables depend on besides the code: the functions' defaults, the layers
# and the methods (the chapter checks that the file was made with the same)
SETTINGS = {
    "scene_task": _defaults(compare.scene_task),
    "metric_table": _defaults(compare.metric_table),
    "sanity_table": _defaults(compare.sanity_table),
    "instance_table": _defaults(family.instance_table),
    "head_table": _defaults(family.head_table),
    "flatten_head": _defaults(family.flatten_head),
    "depths": list(DEPTHS),
    "depth_methods": list(DEPTH_METHODS),
    "methods": list(compare.FAMILY),
}


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m cambook.seed_tables",
        description="The tables of Chapters 5 and 6 for several seeds",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--json", help="where to write the results (default: print them)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: torch's, as in the chapter)",
    )
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    seeds = []
    for i, seed in enumerate(args.seeds):
        clock = time.perf_counter()
        seeds.append(tables(compare.scene_task(seed)))
        print(
            f"[{i + 1}/{len(args.seeds)}] seed {seed}: "
            f"{time.perf_counter() - clock:.0f} s",
            file=sys.stderr,
            flush=True,
        )
    output = {
        "meta": {**record("cambook.seed_tables", argv), "settings": SETTINGS},
        "seeds": seeds,
    }
    write(output, args.json)
    return output


if __name__ == "__main__":
    main()
