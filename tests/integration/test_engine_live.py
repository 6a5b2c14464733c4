"""The engine against real Redis and real workers: killed workers, a restarted Redis, retries,
recovery, cancel, timeouts and dependencies."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tdauto import AutomationSystems, ExecutionStatus, ProcessType, ScheduleType, Trigger
from tdauto.processes import stop_processes
from tests.integration.conftest import REPO, cli_env
from tests.integration.test_beat import start_beat, wait_for
from tests.support.redis_server import RedisServer

S = ExecutionStatus


def create(system: AutomationSystems, name: str, actions: list[dict[str, Any]], **opts: Any) -> str:
    task = asyncio.run(
        system.create_task(
            name=name,
            type=ProcessType.MAINTENANCE,
            schedule=ScheduleType.DAILY,
            schedule_config={"hour": 2},
            actions=actions,
            **opts,
        )
    )
    return task.id


@pytest.fixture
def beat(redis_url: str, data_dir: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A beat, for the engine's timers: retries and the reaper."""
    proc = start_beat(redis_url, data_dir, data_dir / "beat.log")
    yield proc
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


def start_worker(redis_url: str, data_dir: Path, pool: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tdauto.cli", "worker", pool],
        env=cli_env(redis_url, data_dir),
        stdout=(data_dir / f"{pool}-2.log").open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=REPO,
    )


def test_killed_worker_action_finishes_on_a_new_worker_with_one_side_effect(
    system: AutomationSystems,
    workers: list[subprocess.Popen[bytes]],
    beat: subprocess.Popen[bytes],
    redis_url: str,
    data_dir: Path,
    tmp_path: Path,
) -> None:
    effects = tmp_path / "effects"
    task_id = create(
        system, "backup-ish", [{"type": "effect", "params": {"dir": str(effects), "seconds": 8}}]
    )
    execution = system.trigger_sync(task_id)
    wait_for(lambda: (effects / "started-1").exists(), 60, "the action to start")
    # When the cpu worker's whole process group is killed in the middle of the action
    os.killpg(workers[0].pid, signal.SIGKILL)
    workers[0].wait()
    killed_at = time.monotonic()
    workers.append(start_worker(redis_url, data_dir, "cpu"))
    done = system.wait_sync(execution.id, timeout=120)
    recovered_s = time.monotonic() - killed_at
    # Then it ends SUCCEEDED on the new worker, two attempts, the side effect once
    assert done.status is S.SUCCEEDED, done.model_dump_json(indent=2)
    assert done.actions[0].attempts == 2 and done.actions[0].lost == 1
    assert (effects / "effects.log").read_text().count("\n") == 1
    assert recovered_s < 60, recovered_s
    print(f"recovered {recovered_s:.1f}s after the kill")


def test_redis_restart_in_the_middle_of_a_run(
    system: AutomationSystems,
    workers: list[subprocess.Popen[bytes]],
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    task_id = create(
        system,
        "survives redis",
        [
            {"type": "effect", "params": {"dir": str(tmp_path / "a"), "seconds": 4}},
            {"type": "effect", "params": {"dir": str(tmp_path / "b"), "seconds": 1}},
        ],
    )
    execution = system.trigger_sync(task_id)
    wait_for(lambda: (tmp_path / "a" / "started-1").exists(), 60, "the first action")
    redis_server.restart()
    done = system.wait_sync(execution.id, timeout=120)
    assert done.status is S.SUCCEEDED, done.model_dump_json(indent=2)
    assert [r.status for r in done.actions] == [S.SUCCEEDED, S.SUCCEEDED]


def test_retry_then_success_and_exhausted_retries_run_recovery(
    system: AutomationSystems,
    workers: list[subprocess.Popen[bytes]],
    beat: subprocess.Popen[bytes],
    tmp_path: Path,
) -> None:
    ok = create(
        system,
        "flaky ok",
        [{"type": "flaky", "params": {"fail_times": 1}}],
        retry={"max": 2, "backoff": 1},
    )
    bad = create(
        system,
        "flaky bad",
        [
            {
                "type": "flaky",
                "params": {"fail_times": 9},
                "retry": {"max": 1, "backoff": 1},
                "on_failure": [{"type": "effect", "params": {"dir": str(tmp_path / "rollback")}}],
            }
        ],
        on_failure=[{"type": "effect", "params": {"dir": str(tmp_path / "alert")}}],
    )
    first = system.wait_sync(system.trigger_sync(ok).id, timeout=90)
    assert first.status is S.SUCCEEDED and first.actions[0].attempts == 2
    second = system.wait_sync(system.trigger_sync(bad).id, timeout=90)
    assert second.status is S.FAILED
    assert [(r.type, r.phase, r.status) for r in second.actions] == [
        ("flaky", "main", S.FAILED),
        ("effect", "recovery", S.SUCCEEDED),
        ("effect", "recovery", S.SUCCEEDED),
    ]
    assert second.actions[0].attempts == 2 and "fails on purpose" in (second.error or "")
    assert (tmp_path / "rollback" / "effects.log").exists()
    assert (tmp_path / "alert" / "effects.log").exists()


def sleepers(tag: str) -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["cmdline"]) if tag in " ".join(p.info["cmdline"] or [])]


def test_cancel_of_a_running_command_stops_it_and_its_process(
    system: AutomationSystems,
    workers: list[subprocess.Popen[bytes]],
    redis_url: str,
    data_dir: Path,
) -> None:
    tag = "61.2345"
    task_id = create(
        system, "sixty seconds", [{"type": "command", "params": {"argv": ["sleep", tag]}}]
    )
    execution = system.trigger_sync(task_id)
    wait_for(lambda: bool(sleepers(tag)), 60, "the command to start")
    cancelled_at = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "tdauto.cli", "exec", "cancel", execution.id],
        env=cli_env(redis_url, data_dir),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    wait_for(lambda: not sleepers(tag), 30, "the subprocess to go")
    gone_s = time.monotonic() - cancelled_at
    done = system.wait_sync(execution.id, timeout=30)
    assert done.status is S.CANCELLED
    wait_for(
        lambda: system.get_execution_sync(execution.id).actions[0].status is S.CANCELLED,
        30,
        "the action to be recorded cancelled",
    )
    assert gone_s < 5, gone_s


def test_timeout_and_dependencies(
    system: AutomationSystems, workers: list[subprocess.Popen[bytes]]
) -> None:
    hung = create(
        system, "hung", [{"type": "command", "params": {"argv": ["sleep", "30"]}, "timeout": 2}]
    )
    done = system.wait_sync(system.trigger_sync(hung).id, timeout=60)
    assert done.status is S.TIMED_OUT and done.actions[0].status is S.TIMED_OUT

    a = create(system, "A", [{"type": "flaky", "params": {"fail_times": 0}}])
    b = create(
        system, "B", [{"type": "flaky", "params": {"fail_times": 0}}], run_after={"task": "A"}
    )
    fail = create(system, "A2", [{"type": "flaky", "params": {"fail_times": 5}}])
    c = create(
        system, "C", [{"type": "flaky", "params": {"fail_times": 0}}], run_after={"task": "A2"}
    )
    upstream = system.wait_sync(system.trigger_sync(a).id, timeout=60)
    assert upstream.status is S.SUCCEEDED
    wait_for(lambda: bool(system.store.list_executions(task_id=b)), 30, "B to be triggered")
    (b_run,) = system.store.list_executions(task_id=b)
    assert b_run.trigger is Trigger.EVENT and b_run.triggered_by["execution_id"] == upstream.id
    assert system.wait_sync(b_run.id, timeout=60).status is S.SUCCEEDED
    failed = system.wait_sync(system.trigger_sync(fail).id, timeout=60)
    assert failed.status is S.FAILED
    time.sleep(2)
    assert system.store.list_executions(task_id=c) == []


def test_a_recycled_pool_child_records_its_success_before_it_goes(
    system: AutomationSystems, redis_url: str, data_dir: Path
) -> None:
    # Given a memory pool that writes successes behind and replaces a child once it holds
    # more than 160 MiB, and no beat (nothing would recover a success lost with its child)
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / "memory-2.log"
    worker = subprocess.Popen(
        [sys.executable, "-m", "tdauto.cli", "worker", "memory"],
        env=cli_env(
            redis_url, data_dir, TDAUTO_MEMORY_CHILD_MAX_MB="160", TDAUTO_WRITE_BEHIND="true"
        ),
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=REPO,
    )
    try:
        wait_for(
            lambda: any("memory@itest" in r for r in system.app.control.ping(timeout=0.5) or []),
            60,
            "the memory worker",
        )
        grows = [
            {"type": "hold_memory", "params": {"mb": 200}},
            {"type": "hold_memory", "params": {"mb": 0}},
        ]
        task_id = create(system, "grows", grows, overlap="allow")

        # When each run's first action grows its child past the limit (its success, which
        # also sends the second action, is written behind while Celery replaces the child)
        runs = [system.wait_sync(system.trigger_sync(task_id).id, timeout=60) for _ in range(3)]

        # Then every run is recorded SUCCEEDED, each action at its first attempt, and each
        # run's first action ran on a new child
        assert [r.status for r in runs] == [S.SUCCEEDED] * 3, log.read_text()[-3000:]
        assert [[a.attempts for a in r.actions] for r in runs] == [[1, 1]] * 3
        pids = {(r.actions[0].output or {})["pid"] for r in runs}
        assert len(pids) == 3, log.read_text()[-3000:]
    finally:
        stop_processes([worker], 10)
