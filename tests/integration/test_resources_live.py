"""Admission across hosts: worker groups with their own host names stand for hosts."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tdauto import AutomationSystems, ExecutionStatus, ProcessType, ScheduleType
from tdauto.processes import stop_processes
from tests.integration.conftest import REPO, cli_env
from tests.integration.test_beat import wait_for

S = ExecutionStatus
HOSTS = ("host-a", "host-b")


@pytest.fixture
def groups(
    redis_url: str, data_dir: Path, system: AutomationSystems
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """A cpu worker per host name, each with the sampler publishing its load."""
    data_dir.mkdir(parents=True, exist_ok=True)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tdauto.cli", "worker", "cpu"],
            env=cli_env(redis_url, data_dir, TDAUTO_HOST=host),
            stdout=(data_dir / f"{host}.log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=REPO,
        )
        for host in HOSTS
    ]
    wait_for(
        lambda: {s["host"] for s in system.store.samples()} >= set(HOSTS),
        90,
        "samples of both hosts",
    )
    yield procs
    stop_processes(procs, 10)


def test_sixty_percent_never_runs_twice_on_one_host_and_the_third_waits(
    system: AutomationSystems,
    groups: list[subprocess.Popen[bytes]],
    redis_url: str,
    data_dir: Path,
    tmp_path: Path,
) -> None:
    task = asyncio.run(
        system.create_task(
            name="heavy",
            type=ProcessType.OPTIMIZATION,
            schedule=ScheduleType.DAILY,
            schedule_config={"hour": 2},
            actions=[{"type": "effect", "params": {"dir": str(tmp_path / "fx"), "seconds": 3}}],
            resources={"cpu": 60},
            overlap="allow",
        )
    )
    runs = [system.trigger_sync(task.id) for _ in range(3)]
    done = [system.wait_sync(r.id, timeout=120) for r in runs]
    assert [d.status for d in done] == [S.SUCCEEDED] * 3, [d.error for d in done]
    spans: dict[str, list[tuple[float, float]]] = {}
    for d in done:
        a = d.actions[0]
        assert a.started_at and a.finished_at and a.host in HOSTS
        spans.setdefault(a.host, []).append((a.started_at.timestamp(), a.finished_at.timestamp()))
    for host, host_spans in spans.items():
        ordered = sorted(host_spans)
        assert all(b[0] >= a[1] - 0.05 for a, b in itertools.pairwise(ordered)), (host, ordered)
    assert system.store.reservations() == {}

    shown = subprocess.run(
        [sys.executable, "-m", "tdauto.cli", "resources", "--json"],
        env=cli_env(redis_url, data_dir),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert shown.returncode == 0, shown.stderr
    view = json.loads(shown.stdout)
    assert {s["host"] for s in view["samples"]} >= set(HOSTS)


def test_a_vanished_host_loses_its_samples(
    system: AutomationSystems, groups: list[subprocess.Popen[bytes]]
) -> None:
    os.killpg(groups[0].pid, signal.SIGKILL)
    groups[0].wait()
    started = time.monotonic()
    wait_for(lambda: "host-a" not in {s["host"] for s in system.store.samples()}, 60, "expiry")
    assert time.monotonic() - started < 30
