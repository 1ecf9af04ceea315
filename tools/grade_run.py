"""Running one graded notebook: nbval in a sandbox, then the hidden checks' child (used
by tools/grade.py)."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import grade_hidden as hidden
import grade_sandbox as sandbox
from grade_plugin import OUTPUT_LIMIT_EXIT

ROOT = Path(__file__).resolve().parents[1]
SANITIZE = ROOT / "coursework" / "sanitize.cfg"


@dataclass
class Run:
    records: list[dict]  # one per cell that ran under nbval, then one per hidden check
    killed: bool  # the nbval run was stopped by a limit (time, output, CPU, file size)
    returncode: int | None
    tail: str  # end of pytest's output, for notes when nothing was recorded
    limit: str = ""  # the limit that stopped the nbval run, in words
    hidden_limit: str = ""  # the limit that stopped the hidden checks' child, in words


@dataclass(frozen=True)
class Settings:
    cell_timeout: float
    notebook_timeout: float
    threads: int
    limits: sandbox.Limits
    wants: dict  # notebook -> hidden check id -> the reference's result
    seeds: dict  # notebook -> hidden check id -> seed (None: the public inputs)


RECORD_KEYS = {
    "cell": (int, type(None)),
    "id": (str, type(None)),
    "grading": dict,
    "outcome": str,
    "ename": str,
    "evalue": str,
    "timed_out": bool,
}


def _records(path: Path, visible: set[str]) -> list[dict]:
    """The plugin's records, checked: the student's kernel could have written to the
    file, so a record that is malformed or claims to be anything but a visible check or
    a student cell is dropped."""
    records = []
    data = hidden.read_file(path, 16 << 20)
    lines = data.decode("utf-8", "replace").splitlines()[:10000] if data else []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:  # a line cut short by a kill
            continue
        if not isinstance(record, dict) or not all(
            isinstance(record.get(k), t) for k, t in RECORD_KEYS.items()
        ):
            continue
        grading = record["grading"]
        role, key = grading.get("role"), grading.get("key")
        if record["outcome"] not in ("passed", "error", "skipped") or not (
            (role == "check" and key in visible)
            or (role in ("student", "solution") and key is None)
        ):
            continue
        records.append(record)
    return records


def run_notebook(
    path: Path, key: dict, settings: Settings, account: sandbox.Account
) -> Run:
    """Run one graded notebook under pytest + nbval in a sandboxed process; never
    raises.
    """
    results = path.with_suffix(".results.jsonl")
    ini = path.parent / "pytest.ini"
    ini.write_text("[pytest]\n", encoding="utf-8")
    command = [
        sys.executable,
        "-m",
        "pytest",
        path.name,
        "--nbval-lax",
        "--nbval-current-env",
        "--nbval-sanitize-with",
        str(SANITIZE),
        f"--nbval-cell-timeout={settings.cell_timeout:g}",
        "-p",
        "no:cacheprovider",
        "-p",
        "grade_plugin",
        f"--grading-results={results.name}",
        "-c",
        ini.name,
        "--rootdir",
        ".",
        "-q",
        "--no-header",
        "-W",
        "ignore",
        f"--grading-output-limit={settings.limits.output_kb * 1024}",
    ]
    for item in path.parent.iterdir():
        if account.uid is not None:
            os.chown(item, account.uid, account.uid)
    env = sandbox.child_env(
        [str(Path(__file__).resolve().parent), str(ROOT)], settings.threads
    )
    limits = dataclasses.replace(settings.limits, wall_s=settings.notebook_timeout)
    outcome = sandbox.run(command, path.parent, env, limits, account)
    if outcome.returncode == OUTPUT_LIMIT_EXIT and outcome.limit is None:
        outcome.limit = "output"
    visible = {c["id"] for e in key["exercises"] for c in e["checks"]}
    return Run(
        _records(results, visible),
        outcome.limit is not None,
        outcome.returncode,
        outcome.output[-2000:],
        limits.named(outcome.limit) if outcome.limit else "",
    )


def run_hidden(
    run: Run,
    prepared,
    key: dict,
    folder: Path,
    settings: Settings,
    account: sandbox.Account,
) -> None:
    """The hidden checks of every exercise whose visible checks all passed: the
    submission's functions called in a sandboxed child, the results judged here;
    appended to ``run``."""
    passed = {
        r["grading"]["key"]
        for r in run.records
        if r["grading"]["role"] == "check" and r["outcome"] == "passed"
    }
    probes, exercise_of = [], {}
    name = key["notebook"]
    for exercise in key["exercises"]:
        if (
            exercise["id"] in prepared.deleted
            or not {c["id"] for c in exercise["checks"]} <= passed
        ):
            continue
        for check in exercise["hidden_checks"]:
            probes.append(
                {
                    "id": check["id"],
                    "source": check["source"],
                    "seed": settings.seeds[name][check["id"]],
                }
            )
            exercise_of[check["id"]] = exercise["id"]
    if not probes:
        return
    timed_out = {r.get("id") for r in run.records if r.get("timed_out")}
    cells = [
        {"id": c["id"], "source": c.source}
        for c in prepared.notebook.cells
        if c.cell_type == "code"
        and c.metadata["grading"]["role"] in ("student", "solution")
        and c["id"] not in timed_out
    ]
    limits = dataclasses.replace(settings.limits, wall_s=settings.notebook_timeout)
    results, outcome = hidden.run(
        cells, probes, folder, limits, account, settings.cell_timeout, settings.threads
    )
    if outcome.limit:
        run.hidden_limit = limits.named(outcome.limit)
    for probe in probes:
        probed = results[probe["id"]]
        record = {
            "cell": None,
            "id": None,
            "phase": "call",
            "timed_out": probed.timed_out,
            "grading": {
                "role": "hidden-check",
                "exercise": exercise_of[probe["id"]],
                "key": probe["id"],
            },
        }
        if probed.missing:
            record.update(
                outcome="error", ename="Stopped", evalue=_stopped(outcome, limits)
            )
        elif probed.ok:
            verdict = hidden.judge(
                probe["source"], probed.value, settings.wants[name][probe["id"]]
            )
            record.update(outcome=verdict[0], ename=verdict[1], evalue=verdict[2])
        else:
            record.update(outcome="error", ename=probed.ename, evalue=probed.evalue)
        run.records.append(record)


def _stopped(outcome: sandbox.Outcome, limits: sandbox.Limits) -> str:
    if outcome.limit:
        return (
            "not run: the process running your code was stopped at "
            f"{limits.named(outcome.limit)}"
        )
    code = outcome.returncode
    how = (
        f"was killed by signal {-code}"
        if code is not None and code < 0
        else f"exited with status {code}"
    )
    return (
        f"not run: the process running your code {how} before this hidden check "
        "(does your code call sys.exit or os._exit, or run out of memory?)"
    )
