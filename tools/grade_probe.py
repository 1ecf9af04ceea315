"""The child that calls a submission's functions on the hidden inputs (run by
tools/grade.py).

    python tools/grade_probe.py JOB.json   # in a scratch folder, under grade_sandbox

``JOB.json``: ``cells`` (the submission's code cells, check cells left out: ``id``,
``source``), ``probes`` (the key's hidden checks: ``id``, ``source``, ``seed``),
``cell_timeout`` and ``probe_timeout`` in seconds. The cells run in order in one IPython
shell (magics work; an error is shown and the next cell runs), each under a timer. Then,
for each hidden check, its ``probe(seed)`` is defined in a copy of the shell's namespace
and called; what it returns is written with ``torch.save`` to ``results/<id>.pt``, and
``results/<id>.json`` says whether it returned or raised (name and message).

Nothing written here is trusted: the grader loads each ``.pt`` with
``torch.load(weights_only=True)``, checks every type itself and compares in its own
process. The conversions below (NumPy values, dict and tuple subclasses to plain ones)
only spare honest answers an error.
"""

from __future__ import annotations

import builtins
import json
import os
import signal
import sys

RESULTS = "results"


class TimeLimit(BaseException):
    """Raised by the timer in the code that runs too long."""


def _alarm(signum, frame):
    raise TimeLimit()


def _timer(seconds: float) -> None:
    signal.setitimer(signal.ITIMER_REAL, seconds)


def _plain(value, depth: int = 0):
    """Honest look-alikes of plain data made plain; anything else left for the grader to
    reject."""
    import torch

    if depth > 50:
        return value
    kind = type(value)
    if kind.__module__ == "numpy":
        import numpy

        if isinstance(value, numpy.generic):
            return value.item()
        if isinstance(value, numpy.ndarray) and value.dtype != object:
            return torch.from_numpy(value.copy())
    if kind is torch.nn.Parameter or kind is torch.Size:
        return value.detach() if kind is torch.nn.Parameter else tuple(value)
    if (
        kind is not dict
        and isinstance(value, dict)
        and kind.__module__ == "collections"
    ):
        return {k: _plain(v, depth + 1) for k, v in value.items()}
    if kind is dict:
        return {k: _plain(v, depth + 1) for k, v in value.items()}
    if kind is list:
        return [_plain(v, depth + 1) for v in value]
    if (
        kind is tuple
        or kind.__module__ == "torch.return_types"
        or (isinstance(value, tuple) and hasattr(kind, "_fields"))
    ):
        return tuple(_plain(v, depth + 1) for v in value)
    return value


def _guard_network() -> None:
    """Where no network namespace could be made: connections to other hosts fail."""
    import socket

    def refuse(*args, **kwargs):
        raise OSError("grading: no network")

    socket.getaddrinfo = refuse
    socket.create_connection = refuse
    socket.socket.connect = socket.socket.connect_ex = socket.socket.sendto = refuse


def main(job_path: str) -> None:
    save_json, write = json.dumps, builtins.open
    with write(job_path, encoding="utf-8") as handle:
        job = json.load(handle)
    os.remove(job_path)  # the seeds are not left for the code below to read
    os.makedirs(RESULTS, exist_ok=True)
    import torch
    from IPython.core.interactiveshell import InteractiveShell

    save = torch.save
    if os.environ.get("CAMGRADE_NO_NETWORK"):
        _guard_network()
    signal.signal(signal.SIGALRM, _alarm)
    shell = InteractiveShell.instance()
    for cell in job["cells"]:
        _timer(job["cell_timeout"])
        try:
            shell.run_cell(cell["source"], store_history=False)
        except BaseException:  # a timer that fired outside the cell's own code
            pass
        finally:
            _timer(0)
    namespace = dict(shell.user_ns)
    for probe in job["probes"]:
        status = {"ok": False, "ename": "", "evalue": "", "timed_out": False}
        try:
            _timer(job["probe_timeout"])
            try:
                scope = dict(namespace)
                exec(
                    compile(probe["source"], f"<hidden check {probe['id']}>", "exec"),
                    scope,
                )
                value = (
                    scope["probe"]()
                    if probe["seed"] is None
                    else scope["probe"](probe["seed"])
                )
            finally:
                _timer(0)
            save(_plain(value), os.path.join(RESULTS, f"{probe['id']}.pt"))
            status["ok"] = True
        except TimeLimit:
            status["timed_out"] = True
        except BaseException as error:  # the submission's code raised (SystemExit too)
            status["ename"] = type(error).__name__
            try:
                status["evalue"] = str(error)[:2000]
            except BaseException:
                status["evalue"] = "(the message could not be shown)"
        with write(
            os.path.join(RESULTS, f"{probe['id']}.json"), "w", encoding="utf-8"
        ) as out:
            out.write(save_json(status))
    sys.stdout.flush()
    os._exit(0)  # no exit handlers the submission may have registered


if __name__ == "__main__":
    main(sys.argv[1])
