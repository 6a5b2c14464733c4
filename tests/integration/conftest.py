"""Integration fixtures: a real redis-server and real worker processes started by the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import kombu.exceptions
import pytest
import redis

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


def _wait_for_pings(system: AutomationSystems, names: set[str], log_dir: Path) -> None:
    """Until every worker in ``names`` answers a ping (60 s). A broker connection that drops
    while the workers start is retried, the failure kept for the message."""
    seen: set[str] = set()
    failure: Exception | None = None
    deadline = time.monotonic() + 60
    while not names <= seen:
        if time.monotonic() > deadline:
            logs = "\n".join(p.read_text()[-2000:] for p in log_dir.glob("*.log"))
            raise AssertionError(f"workers not ready; got {seen}; last error {failure!r}\n{logs}")
        try:
            for reply in system.app.control.ping(timeout=0.5) or []:
                seen.update(reply)
        except (OSError, kombu.exceptions.OperationalError, redis.ConnectionError) as exc:
            failure = exc
            time.sleep(0.2)


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
    try:
        _wait_for_pings(system, names, log_dir)
    except BaseException:
        stop_processes(procs, 5)  # never leave workers behind to find a later test's port
        raise
    yield procs
    stop_processes(procs, 10)
