"""Where a results file came from: the command, date, machine and versions that made it;
and the file itself, written or printed."""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
from collections.abc import Sequence

import torch


def record(module: str, argv: Sequence[str] | None = None) -> dict:
    """``{command, date, machine, threads, versions}`` for a results file written by
    ``python -m <module>`` with ``argv`` (default: this process's arguments)."""
    from camlib import __version__

    arguments = sys.argv[1:] if argv is None else list(argv)
    return {
        "command": " ".join(["python -m", module, *arguments]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"
        ),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}",
        "threads": torch.get_num_threads(),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "camlib": __version__,
        },
    }


def write(output: dict, path: str | None) -> None:
    """``output`` as indented JSON into ``path``, or on standard output when ``path`` is
    None."""
    text = json.dumps(output, indent=1)
    if path:
        with open(path, "w") as handle:
            handle.write(text + "\n")
    else:
        print(text)
