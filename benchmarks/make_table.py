"""Writes the results table of benchmarks/README.md from the results files.

    python benchmarks/make_table.py [--check]

One row per figure of each known results file that exists (missing files are skipped):
the figure, its target where it has one, and the run (date, CPUs or device, other load),
said once per file. The table replaces the lines between the two markers in the README;
``--check`` only says whether the README's table is current (exit 1 if not).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "benchmarks" / "README.md"
BEGIN = "<!-- table: begin (python benchmarks/make_table.py) -->"
END = "<!-- table: end -->"


def run_of(meta: dict) -> str:
    """Date, machine and other processes' load of a run, as short as it can be said."""
    date = str(meta.get("date", "?"))[:10]
    where = meta.get("device_name") or meta.get("machine") or meta.get("device") or ""
    if meta.get("threads"):
        n = meta["threads"]
        where = f"{where}, {n} thread{'s' if n != 1 else ''}"
    elif meta.get("cpus"):
        where = f"{where}, {meta['cpus']} CPUs"
    share = meta.get(
        "other_processes_cpu_share", meta.get("other_processes_cpu_share_during_timing")
    )
    load = f"; other load {share:.0%}" if isinstance(share, (int, float)) else ""
    if share is None and isinstance(meta.get("load_average"), list):
        load = "; load average " + "/".join(f"{v:.1f}" for v in meta["load_average"])
    return f"{date}, {where}{load}".strip(", ")


def targets(data: dict) -> list[tuple[str, str, str]]:
    """Rows of a ``targets`` list (target, value, limit, passed), else of a summary."""
    if isinstance(data.get("targets"), list):
        return [
            (t["target"], f"{t['value']:.3g}", "met" if t["passed"] else "MISSED")
            for t in data["targets"]
        ]
    return [
        (key, f"{value:.3g}", "")
        for key, value in data.get("summary", {}).items()
        if isinstance(value, (int, float))
    ]


def family(data: dict) -> list[tuple[str, str, str]]:
    rows = targets(data)
    key = "Ablation-CAM: pgc's time / camlib's with tail reruns"
    if key in data.get("summary", {}):
        rows.append((key, f"{data['summary'][key]:.3g}", ""))
    return rows


def build_time(data: dict) -> list[tuple[str, str, str]]:
    rows = []
    chapters = [r for r in data["rows"] if str(r["what"]).startswith("notebooks/")]
    if chapters:
        worst = max(chapters, key=lambda r: r["reference_seconds"])
        rows.append(
            (
                f"slowest chapter ({Path(worst['what']).stem}), reference s",
                f"{worst['reference_seconds']:.0f}",
                "<= 60: " + verdict(worst),
            )
        )
    for r in data["rows"]:
        if not str(r["what"]).startswith("notebooks/") and r.get("budget"):
            rows.append(
                (
                    f"{r['what']}, reference s",
                    f"{r['reference_seconds']:.0f}",
                    f"<= {r['budget']:g}: " + verdict(r),
                )
            )
    return rows


def verdict(row: dict) -> str:
    return "met" if row.get("within_budget") else "MISSED"


def explorer(data: dict) -> list[tuple[str, str, str]]:
    """The slowest CAM update, and each method that reruns the network, in reference
    units."""
    scale = 0.25 / data["reference_seconds"]
    updates = {
        k: r["ms"]
        for k, r in data["python"].items()
        if k.startswith("CAM") and "ms" in r
    }
    rows = []
    if updates:
        name = max(updates, key=updates.get)
        what = name.split(": ", 1)[-1]
        rows.append(
            (
                f"explorer, slowest CAM update ({what}), reference ms",
                f"{updates[name] * scale:.0f}",
                "<= 100",
            )
        )
    for name, row in data["python"].items():
        if "seconds" in row:
            rows.append(
                (f"explorer: {name}, reference s", f"{row['seconds'] * scale:.1f}", "")
            )
    browser = data.get("browser")
    if browser and browser.get("reference_seconds"):
        # change-to-picture in JupyterLab, scaled by the reference timed around that
        # part
        scale = 0.25 / browser["reference_seconds"]
        slow = ("method: Score-CAM", "Score-CAM")  # the steps that compute Score-CAM
        steps = {k: ms for k, ms in browser["steps"].items() if not k.startswith(slow)}
        name = max(steps, key=steps.get)
        rows.append(
            (
                f"explorer in JupyterLab, slowest change to picture ({name}), "
                "reference ms",
                f"{steps[name] * scale:.0f}",
                "",
            )
        )
        for name, ms in browser["steps"].items():
            if name.startswith(slow):
                rows.append(
                    (
                        f"explorer in JupyterLab: {name}, reference s",
                        f"{ms / 1000 * scale:.1f}",
                        "",
                    )
                )
    return rows


def grading(data: dict) -> list[tuple[str, str, str]]:
    target = data.get("target_s")
    value = data.get("wall_reference_s", data.get("wall_s"))
    met = (
        ""
        if target is None
        else f"<= {target:g}: " + ("met" if value <= target else "MISSED")
    )
    return [
        (
            f"grading {data['students']} students ({data['notebooks']} notebooks), "
            "reference s",
            f"{value:.0f}",
            met,
        )
    ]


# (results file, the script that writes it, rows of it); a row per figure
FILES = [
    ("cambook/results/family_speed.json", "family_speed.py", family),
    ("cambook/results/speed_memory.json", "speed_memory.py", targets),
    ("benchmarks/results/vit-speed-cpu.json", "vit_speed.py", targets),
    ("benchmarks/results/explorer-latency.json", "explorer_latency.py", explorer),
    ("benchmarks/results/grading-speed.json", "grading_speed.py", grading),
    ("benchmarks/results/build-time.json", "build_time.py", build_time),
]


def table(root: Path = ROOT) -> str:
    lines = ["| script | figure | value | target | run |", "|---|---|---:|---|---|"]
    for name, script, rows_of in FILES:
        path = root / name
        if not path.exists():
            continue
        data = json.loads(path.read_text())
        try:
            rows = rows_of(data)
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as error:
            rows = [(f"(not read: {type(error).__name__} {error})", "", "")]
        run = run_of(data.get("meta", data))
        for figure, value, target in rows:  # the script and its run named once
            lines.append(f"| {script} | {figure} | {value} | {target} | {run} |")
            script, run = "", ""
    return "\n".join(lines)


def with_table(readme: str, new: str) -> str:
    head, rest = readme.split(BEGIN, 1)
    return f"{head}{BEGIN}\n{new}\n{END}{rest.split(END, 1)[1]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if it is stale")
    args = parser.parse_args(argv)
    text = README.read_text()
    updated = with_table(text, table())
    if args.check:
        print("current" if updated == text else "stale: run benchmarks/make_table.py")
        return 0 if updated == text else 1
    README.write_text(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
