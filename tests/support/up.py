"""Running ``tdauto up`` and the CLI as a user does, from tests: subprocesses, their output,
and the processes they leave."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import psutil

REPO = Path(__file__).resolve().parents[2]


def local_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a local-mode CLI: no TDAUTO_* from outside, this data dir."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TDAUTO_")}
    return {**clean, "TDAUTO_DATA_DIR": str(data_dir), "PYTHONPATH": str(REPO), **extra}


def tdauto(
    env: dict[str, str], *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "tdauto.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def read_until(stream: IO[str], text: str, proc: subprocess.Popen[str], timeout: float) -> str:
    """What ``stream`` printed up to the first line holding ``text``."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while not any(text in line for line in lines):
        line = stream.readline()
        assert line or proc.poll() is None, "".join(lines)
        assert time.monotonic() < deadline, "".join(lines)
        lines.append(line)
    return "".join(lines)


def start_up(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """``tdauto up`` in its own session, stdout and stderr together; returns once ready."""
    up = subprocess.Popen(
        [sys.executable, "-m", "tdauto.cli", "up", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
        start_new_session=True,
    )
    assert up.stdout is not None
    read_until(up.stdout, "ready in", up, 90)
    return up


def pool_pid(data_dir: Path, pool: str) -> int | None:
    """The pid of ``pool``'s worker as the supervisor recorded it in the data dir's lock."""
    try:
        pools = json.loads((data_dir / "state" / "up.lock").read_text())["pools"]
    except (OSError, ValueError, KeyError):
        return None
    entry = pools.get(pool)
    return int(entry["pid"]) if entry else None


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> float:
    """Seconds until ``predicate()`` is true."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, f"not within {timeout}s: {what}"
        time.sleep(0.1)
    return time.monotonic() - started


def tree(pid: int) -> list[psutil.Process]:
    """``pid`` and every process below it, as they are now."""
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def tdauto_processes(data_dir: Path) -> list[psutil.Process]:
    """Every live process whose environment names ``data_dir`` (what a test left behind)."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.environ().get("TDAUTO_DATA_DIR") == str(data_dir):
                found.append(proc)
        except psutil.Error:
            continue
    return found
