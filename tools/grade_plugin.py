"""pytest plugin used by tools/grade.py: records what happened to each notebook cell
under nbval.

Loaded with ``-p grade_plugin --grading-results=FILE``. For every cell it appends one
JSON line to FILE as soon as the cell has run (so a run that is killed still leaves what
it had): the cell's id and ``grading`` metadata (written by the grader: role and
exercise), whether the cell raised, and the exception's name and message as the kernel
reported them. After a check cell of an exercise times out (the student's function never
returns), that exercise's remaining check cells are skipped: one infinite loop costs one
cell timeout, not one per check.
"""

from __future__ import annotations

import json
import re

import pytest

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_timed_out_exercises: set[str] = set()


OUTPUT_LIMIT_EXIT = 75  # pytest's exit status when the kernel printed too much


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--grading-results", default=None, help="JSON-lines file for per-cell results"
    )
    parser.addoption(
        "--grading-output-limit",
        type=int,
        default=0,
        help="bytes of cell output (all cells) before the run is stopped",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Count the output the kernel sends; past the limit, stop this process (the grader
    reports the limit). nbval's own reader is replaced because it formats every message
    for its debug log, which takes minutes on a gigabyte."""
    limit = config.getoption("--grading-output-limit")
    if not limit:
        return
    from nbval import kernel

    seen = [0]

    def get_message(self, stream, timeout=None):
        if stream == "iopub":
            message = self.kc.get_iopub_msg(timeout=timeout)
        elif stream == "shell":
            message = self.kc.get_shell_msg(timeout=timeout)
        else:
            raise ValueError(f"invalid stream {stream!r}")
        content = message.get("content", {})
        seen[0] += len(content.get("text", "")) + len(str(content.get("data", "")))
        if seen[0] > limit:
            import os
            import sys

            sys.stdout.write(
                f"grade_plugin: the cells printed more than {limit} bytes\n"
            )
            sys.stdout.flush()
            os._exit(OUTPUT_LIMIT_EXIT)
        return message

    kernel.RunningKernel.get_message = get_message


def _grading(item: pytest.Item) -> dict:
    cell = getattr(item, "cell", None)
    return dict(cell.get("metadata", {}).get("grading", {})) if cell is not None else {}


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    grading = _grading(item)
    if (
        grading.get("role") in ("check", "hidden-check")
        and grading.get("exercise") in _timed_out_exercises
    ):
        pytest.skip(f"an earlier cell of exercise {grading['exercise']} timed out")


def _error_details(
    item: pytest.Item, excinfo: pytest.ExceptionInfo
) -> tuple[str, str, bool]:
    """(exception name, message, timed out) of a failed cell, from the kernel's error
    output."""
    message = ANSI.sub("", str(excinfo.value))
    timed_out = message.startswith("Timeout of")
    errors = [
        out
        for out in (getattr(item, "test_outputs", None) or [])
        if out.get("output_type") == "error"
    ]
    if errors and not (timed_out and errors[-1].get("ename") == "KeyboardInterrupt"):
        return (
            ANSI.sub("", errors[-1].get("ename", "")),
            ANSI.sub("", errors[-1].get("evalue", "")),
            timed_out,
        )
    if timed_out:
        return "Timeout", message, True
    return excinfo.typename, message, False


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    path = item.config.getoption("--grading-results")
    if path is None or not hasattr(item, "cell"):
        return
    skipped = (
        report.skipped
        and call.excinfo is not None
        and call.excinfo.errisinstance(pytest.skip.Exception)
    )
    if call.when == "call" or (
        call.when == "setup" and (skipped or call.excinfo is not None)
    ):
        cell = getattr(item, "cell", None) or {}
        record = {
            "cell": getattr(item, "cell_num", None),
            "id": cell.get("id"),
            "grading": _grading(item),
            "phase": call.when,
        }
        if skipped:
            record.update(
                outcome="skipped",
                ename="Skipped",
                evalue=str(call.excinfo.value.msg),
                timed_out=False,
            )
        elif call.excinfo is None:
            record.update(outcome="passed", ename="", evalue="", timed_out=False)
        else:
            ename, evalue, timed_out = _error_details(item, call.excinfo)
            record.update(
                outcome="error", ename=ename, evalue=evalue, timed_out=timed_out
            )
            if timed_out and record["grading"].get("role") in ("check", "hidden-check"):
                _timed_out_exercises.add(record["grading"]["exercise"])
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
