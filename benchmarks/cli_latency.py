"""The CLI's start-up latency: ``tdauto --help``, ``--version``, ``task list`` and ``exec list``
against ``python -c pass`` (the interpreter alone) and ``celery --help`` in the same run.

A fresh temp data dir gets ``--tasks`` (100) tasks through ``tdauto task create -f`` first
(local mode: no ``TDAUTO_BROKER_URL``, the file store). Then each command runs ``--runs`` (10)
times, round-robin so that a burst of load on a shared machine falls on all of them, each a
fresh process with the same environment (``TDAUTO_*`` removed but the data dir; bytecode
caches written, as an install has them; ``PYTHONPATH`` kept, which is how to measure another
checkout: ``PYTHONPATH=/tmp/old .venv/bin/python benchmarks/cli_latency.py``). The table
gives the median wall time of each command, its spread (min to max), its difference from
``python -c pass`` and its ratios to ``python -c pass`` and to ``celery --help``; ``--json``
prints every run. Issue 19 asks for ``--help`` within 0.25 s of ``python -c pass`` and
``task list`` (100 tasks) under 0.4 s.

Not a timed test: nothing fails on a number. It exits 1 if a command exits non-zero (its
row says so, and still shows its time).

    .venv/bin/python benchmarks/cli_latency.py [--runs 10] [--tasks 100] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
TASK = """\
- name: bench-{i:03d}
  type: maintenance
  schedule: daily
  schedule_config: {{hour: 2, minute: {minute}}}
  actions:
    - type: cleanup
      params: {{older_than: 30days}}
"""


def commands() -> dict[str, list[str]]:
    tdauto = str(BIN / "tdauto")
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        "celery --help": [str(BIN / "celery"), "--help"],
        "tdauto --help": [tdauto, "--help"],
        "tdauto --version": [tdauto, "--version"],
        "tdauto task list": [tdauto, "task", "list"],
        "tdauto exec list": [tdauto, "exec", "list"],
    }


def environment(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TDAUTO_")}
    env["TDAUTO_DATA_DIR"] = str(data_dir)
    env["COLUMNS"] = "200"  # the same table layout whatever the terminal
    # bytecode caches are written (by the untimed first run), as an installed tdauto has them:
    # the runs measure start-up, not compiling every module again
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def fill(data_dir: Path, env: dict[str, str], count: int) -> None:
    """Store ``count`` tasks, as an operator would: one task file through the CLI."""
    path = data_dir.parent / "tasks.yaml"
    path.write_text("".join(TASK.format(i=i, minute=i % 60) for i in range(count)))
    subprocess.run(
        [str(BIN / "tdauto"), "task", "create", "-f", str(path)],
        env=env, check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip


def time_once(argv: list[str], env: dict[str, str]) -> tuple[float, int]:
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start, done.returncode


def measure(runs: int, env: dict[str, str]) -> dict[str, dict[str, Any]]:
    table = commands()
    times: dict[str, list[float]] = {name: [] for name in table}
    codes: dict[str, set[int]] = {name: set() for name in table}
    for argv in table.values():  # one untimed run each: the page cache and .pyc files
        time_once(argv, env)
    for _ in range(runs):
        for name, argv in table.items():
            seconds, code = time_once(argv, env)
            times[name].append(seconds)
            codes[name].add(code)
    return {
        name: {
            "argv": table[name],
            "median_s": statistics.median(times[name]),
            "min_s": min(times[name]),
            "max_s": max(times[name]),
            "exit_codes": sorted(codes[name]),
            "runs_s": times[name],
        }
        for name in table
    }


def render(report: dict[str, dict[str, Any]]) -> str:
    python = report["python -c pass"]["median_s"]
    celery = report["celery --help"]["median_s"]
    lines = [
        f"{'command':<18} {'median s':>9} {'min-max s':>13} {'- python':>9} "
        f"{'/ python':>9} {'/ celery':>9}"
    ]
    for name, row in report.items():
        median = row["median_s"]
        spread = f"{row['min_s']:.3f}-{row['max_s']:.3f}"
        note = "" if row["exit_codes"] == [0] else f"  exit {row['exit_codes']}"
        lines.append(
            f"{name:<18} {median:>9.3f} {spread:>13} {median - python:>+9.3f} "
            f"{median / python:>9.2f} {median / celery:>9.2f}{note}"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="timed runs of each command")
    parser.add_argument("--tasks", type=int, default=100, help="tasks in the store")
    parser.add_argument("--json", action="store_true", help="print every run as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tdauto-cli-latency-") as tmp:
        data_dir = Path(tmp) / "data"
        env = environment(data_dir)
        fill(data_dir, env, args.tasks)
        report = measure(args.runs, env)
    if args.json:
        print(json.dumps({"runs": args.runs, "tasks": args.tasks, "commands": report}, indent=2))
    else:
        print(f"{args.runs} runs each, {args.tasks} tasks in a local store; load {os.getloadavg()}")
        print(render(report))
    return 0 if all(row["exit_codes"] == [0] for row in report.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
