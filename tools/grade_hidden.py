"""The hidden checks, judged where a submission's code never runs (used by
tools/grade.py).

A hidden check in the key (a cell tagged ``hidden-check`` in ``coursework/source/``)
defines two functions and runs nothing else:

- ``probe(seed=None)`` builds the hidden inputs (``seed=None``: the public set; an int:
  a private set drawn from it), calls the exercise's functions on them and returns plain
  data (tensors, numbers, strings, tuples, lists and dicts), including any values it
  needs to judge them by (an oracle's answer, the inputs);
- ``verdict(got, want)`` asserts, with messages a student can act on: ``got`` is what
  ``probe`` returned beside the submission, ``want`` what it returned beside the
  reference solution, on the same inputs.

``probe`` runs in a child process (tools/grade_probe.py, under tools/grade_sandbox.py)
that executes the submission's code cells first; for the expected values, once per
grading run, the same child executes the reference solution's cells. The grader loads
each result with ``torch.load(weights_only=True)`` (no code runs, no class is rebuilt
beyond torch's allow-list), accepts exact types only (:func:`plain`) and runs
``verdict`` in its own process: it never imports or executes the submission's code.

``--secret FILE``: each check's seed is drawn from the secret and the check's id
(:func:`seeds`), so the inputs are ones nobody has seen; the expected values come from
the reference solution on those inputs, at grading time.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

import grade_sandbox as sandbox

ROOT = Path(__file__).resolve().parents[1]
PROBE = Path(__file__).resolve().parent / "grade_probe.py"
MAX_ITEMS = 100_000  # containers and values in one result
MAX_DEPTH = 20


class NotPlain(ValueError):
    """A result that is not plain data; the message says what came instead."""


def seeds(key: dict, secret: bytes | None) -> dict[str, int | None]:
    """Each hidden check's seed: None (the public inputs) or one drawn from the
    secret."""
    checks = [h["id"] for e in key["exercises"] for h in e["hidden_checks"]]
    if secret is None:
        return {check: None for check in checks}
    return {
        check: int.from_bytes(
            hashlib.sha256(secret + b"\0" + check.encode()).digest()[:4], "big"
        )
        % 2**31
        for check in checks
    }


def plain(value):
    """``value`` if it holds only exact plain types (CPU strided tensors, int, float,
    bool, str, None, tuple, list, dict with str or int keys); else :class:`NotPlain`."""
    import torch

    stack, seen = [(value, 0)], 0
    while stack:
        item, depth = stack.pop()
        seen += 1
        if seen > MAX_ITEMS or depth > MAX_DEPTH:
            raise NotPlain(
                f"more than {MAX_ITEMS} values or {MAX_DEPTH} levels of nesting"
            )
        kind = type(item)
        if kind is torch.Tensor:
            if (
                item.layout is not torch.strided
                or item.device.type != "cpu"
                or item.is_quantized
            ):
                raise NotPlain(
                    f"a {item.layout} tensor on {item.device}; expected a plain "
                    "CPU tensor"
                )
        elif kind in (int, float, bool, str, type(None)):
            pass
        elif kind in (tuple, list):
            stack += [(v, depth + 1) for v in item]
        elif kind is dict:
            for k, v in item.items():
                if type(k) not in (str, int):
                    raise NotPlain(f"a dict key of type {type(k).__name__}")
                stack.append((v, depth + 1))
        else:
            raise NotPlain(f"a value of type {kind.__module__}.{kind.__qualname__}")
    return value


def read_file(path: Path, max_bytes: int) -> bytes | None:
    """The bytes of a regular file written by student code, or None: a link, a pipe, a
    device or a file over ``max_bytes`` is not read."""
    try:
        handle = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(handle, "rb") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            return None
        data = file.read(max_bytes + 1)
    return data if len(data) <= max_bytes else None


def load(path: Path, max_bytes: int):
    """A result file written by the child, loaded without running code;
    :class:`NotPlain` if it is not plain data."""
    import torch

    data = read_file(path, max_bytes)
    if data is None:
        raise NotPlain(f"not a regular file of at most {max_bytes} bytes")
    try:
        value = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except (
        Exception
    ) as error:  # UnpicklingError for any class outside torch's allow-list
        text = str(error)
        found = re.search(
            r"unsupported (?:global: )?GLOBAL ([\w.]+)", text, re.IGNORECASE
        )
        what = f"the global {found.group(1)}" if found else f"{type(error).__name__}"
        raise NotPlain(
            f"something torch.load(weights_only=True) refuses ({what})"
        ) from None
    return plain(value)


@dataclass
class Probed:
    """What the child reported for one hidden check."""

    value: object = None
    ok: bool = False
    ename: str = ""
    evalue: str = ""
    timed_out: bool = False
    missing: bool = True  # no report: the child was stopped or ended before this check


def run(
    cells: list[dict],
    probes: list[dict],
    folder: Path,
    limits: sandbox.Limits,
    account: sandbox.Account,
    cell_timeout: float,
    threads: int,
) -> tuple[dict[str, Probed], sandbox.Outcome]:
    """Run the cells, then each probe, in a sandboxed child in ``folder`` (created
    here).
    """
    folder.mkdir(parents=True)
    account.give(folder)
    job = folder / "job.json"
    job.write_text(
        json.dumps(
            {
                "cells": cells,
                "probes": probes,
                "cell_timeout": cell_timeout,
                "probe_timeout": cell_timeout,
            }
        ),
        encoding="utf-8",
    )
    if account.uid is not None:
        os.chown(job, account.uid, account.uid)
    env = sandbox.child_env([str(ROOT)], threads)
    outcome = sandbox.run(
        [sys.executable, str(PROBE), job.name], folder, env, limits, account
    )
    # The account's processes are gone: nothing can swap the folder for a link any more.
    found = folder / "results"
    if found.is_symlink() or not found.is_dir():
        return {probe["id"]: Probed() for probe in probes}, outcome
    return {probe["id"]: _read(found, probe["id"], limits) for probe in probes}, outcome


def _read(results: Path, check: str, limits: sandbox.Limits) -> Probed:
    status_path, value_path = results / f"{check}.json", results / f"{check}.pt"
    data = read_file(status_path, 65536)
    try:
        status = json.loads(data.decode("utf-8")) if data is not None else None
    except ValueError:
        return Probed()
    if not isinstance(status, dict):
        return Probed()
    probed = Probed(
        missing=False,
        timed_out=status.get("timed_out") is True,
        ename=str(status.get("ename", ""))[:200],
        evalue=str(status.get("evalue", ""))[:2000],
    )
    if status.get("ok") is True:
        try:
            probed.value, probed.ok = load(value_path, limits.file_mb << 20), True
        except NotPlain as error:
            probed.ename, probed.evalue = (
                "NotPlainData",
                (
                    "the result is not plain data (tensors, numbers, strings, "
                    f"tuples, lists, dicts): {error}"
                ),
            )
    elif not probed.ename and not probed.timed_out:
        probed.ename = "Error"
    return probed


def judge(source: str, got, want) -> tuple[str, str, str]:
    """``(outcome, exception name, message)`` of one hidden check's verdict, in this
    process: outcome ``passed`` or ``error``."""
    scope: dict = {"__name__": "hidden_check"}
    exec(
        compile(source, "<hidden check>", "exec"), scope
    )  # the key's code, not the student's
    try:
        scope["verdict"](got, want)
    except AssertionError as error:
        return "error", "AssertionError", str(error)
    except Exception as error:  # the result had the wrong structure or type
        return "error", type(error).__name__, str(error)[:500]
    return "passed", "", ""


def reference(
    key: dict,
    source_notebook: Path,
    seed_of: dict,
    folder: Path,
    limits: sandbox.Limits,
    cell_timeout: float,
    threads: int,
) -> dict[str, object]:
    """The expected values: every probe run beside the reference solution."""
    import nbformat

    notebook = nbformat.read(source_notebook, as_version=4)
    cells = [
        {"id": c.get("id", ""), "source": c.source}
        for c in notebook.cells
        if c.cell_type == "code"
        and not {"check", "hidden-check"} & set(c.metadata.get("tags", []))
    ]
    probes = [
        {"id": h["id"], "source": h["source"], "seed": seed_of[h["id"]]}
        for e in key["exercises"]
        for h in e["hidden_checks"]
    ]
    with sandbox.Account() as account:
        results, outcome = run(
            cells, probes, folder, limits, account, cell_timeout, threads
        )
    shutil.rmtree(folder, ignore_errors=True)
    want = {}
    for probe in probes:
        probed = results[probe["id"]]
        if not probed.ok:
            raise SystemExit(
                f"grade: the reference solution of {key['notebook']} fails hidden "
                f"check {probe['id']}: {probed.ename} {probed.evalue}"
                f"{' (timed out)' if probed.timed_out else ''}; "
                f"output: {outcome.output[-1500:]}"
            )
        outcome_, _, message = judge(probe["source"], probed.value, probed.value)
        if outcome_ != "passed":
            raise SystemExit(
                f"grade: hidden check {probe['id']} fails the reference "
                f"solution's own results: {message}"
            )
        want[probe["id"]] = probed.value
    return want


def trial(
    key: dict,
    source_notebook: Path,
    solutions: dict[str, str] | None = None,
    seed_of: dict | None = None,
    checks: set[str] | None = None,
) -> dict[str, tuple[str, str, str]]:
    """For authors of exercises, in this process, on trusted code only: each hidden
    check of ``key`` (or those in ``checks``) judged for the reference solution with
    some solution cells replaced (``solutions``: exercise id -> the cell's source)
    against the reference itself; ``{check id: (outcome, exception name, message)}``.
    Raises RuntimeError if the reference fails a check on its own results."""
    import nbformat

    sys.path.insert(0, str(PROBE.parent))
    from grade_probe import _plain

    notebook = nbformat.read(source_notebook, as_version=4)
    reference, replacements = {"__name__": "__main__"}, []
    for cell in notebook.cells:
        tags = set(cell.metadata.get("tags", []))
        if cell.cell_type != "code" or {"check", "hidden-check"} & tags:
            continue
        code = compile(cell.source, f"<{cell.get('id')}>", "exec")
        exec(code, reference)  # noqa: S102 - the reference solution, trusted
        exercise = next(
            (t[len("exercise-") :] for t in tags if t.startswith("exercise-")), None
        )
        if "solution" in tags and exercise in (solutions or {}):
            replacements.append(solutions[exercise])
    variant = dict(reference)  # the setup once; the replaced functions see its names
    for source in replacements:
        exec(compile(source, "<replaced solution>", "exec"), variant)  # noqa: S102
    seed_of = seed_of or seeds(key, None)
    verdicts = {}
    for check in (h for e in key["exercises"] for h in e["hidden_checks"]):
        if checks is not None and check["id"] not in checks:
            continue
        results = []
        for namespace in (variant, reference):
            scope = dict(namespace)
            exec(compile(check["source"], check["id"], "exec"), scope)  # noqa: S102
            seed = seed_of[check["id"]]
            value = scope["probe"]() if seed is None else scope["probe"](seed)
            results.append(plain(_plain(value)))
        if judge(check["source"], results[1], results[1])[0] != "passed":
            raise RuntimeError(
                f"{check['id']}: the reference fails on its own results: "
                f"{judge(check['source'], results[1], results[1])}"
            )
        verdicts[check["id"]] = judge(check["source"], *results)
    return verdicts
