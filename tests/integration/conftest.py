"""Integration fixtures: a real redis-server and real worker processes started by the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tdauto import AutomationSystems
from tdauto.processes import stop_processes

REPO = Path(__file__).resolve().parents[2]


def cli_env(redis_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        TDAUTO_BROKER_URL=redis_url,
        TDAUTO_DATA_DIR=str(data_dir),
        TDAUTO_PLUGINS="tests.integration.plugin_actions",
        TDAUTO_HOST="itest",
        PYTHONPATH=str(REPO),
    )
    env.update(extra)
    return env


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def system(redis_url: str, data_dir: Path) -> Iterator[AutomationSystems]:
    os.environ.setdefault("PYTHONPATH", str(REPO))
    automation = AutomationSystems(
        broker_url=redis_url,
        data_dir=data_dir,
        plugins=["tests.integration.plugin_actions"],
        host="itest",
    )
    yield automation
    automation.stop()


@pytest.fixture
def workers(
    redis_url: str, data_dir: Path, system: AutomationSystems
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """One worker per pool, started with `tdauto worker POOL`; ready when they answer a ping."""
    log_dir = data_dir / "worker-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    procs = []
    for pool in ("cpu", "memory", "storage"):
        out = (log_dir / f"{pool}.log").open("wb")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "tdauto.cli", "worker", pool],
                env=cli_env(redis_url, data_dir),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=REPO,
            )
        )
    names = {f"{pool}@itest" for pool in ("cpu", "memory", "storage")}
    seen: set[str] = set()
    deadline = time.monotonic() + 60
    while not names <= seen:
        if time.monotonic() > deadline:
            logs = "\n".join(p.read_text()[-2000:] for p in log_dir.glob("*.log"))
            stop_processes(procs, 5)
            raise AssertionError(f"workers not ready; got {seen}\n{logs}")
        for reply in system.app.control.ping(timeout=0.5) or []:
            seen.update(reply)
    yield procs
    stop_processes(procs, 10)
