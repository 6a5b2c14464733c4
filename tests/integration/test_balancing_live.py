"""Resource management live: three worker groups with their own host names stand for three
hosts, a beat runs the resource manager every second, and the facade sends through the router.

No wall-clock thresholds: each test waits for states with generous timeouts, and "within two
manager ticks" is counted in ticks (the tick number and time of every weights record the test
saw), not in seconds.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tdauto import AutomationSystems, Execution, ExecutionStatus, ProcessType, ScheduleType
from tdauto.processes import stop_processes
from tests.integration.conftest import REPO, cli_env
from tests.integration.test_beat import wait_for

S = ExecutionStatus
HOSTS = ("host-a", "host-b", "host-c")
ENV = {
    "TDAUTO_MANAGER_INTERVAL_S": "1",
    "TDAUTO_CONCURRENCY_CPU": "2",
    "TDAUTO_CONCURRENCY_STORAGE": "2",
    "TDAUTO_SPILL_BACKLOG": "2",
    "TDAUTO_LEASE_TTL_S": "4",
    "TDAUTO_LEASE_RENEW_S": "1",
}


@dataclass
class Cluster:
    groups: dict[str, list[subprocess.Popen[bytes]]]
    beat: subprocess.Popen[bytes]
    logs: Path
    seen: list[dict[str, Any]] = field(default_factory=list)  # every weights record, in order

    def weight(self, record: dict[str, Any], host: str, klass: str = "cpu") -> float:
        entry = record["classes"][klass].get(host)
        return 0.0 if entry is None else float(entry["weight"])

    def logs_tail(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in self.logs.glob("*.log"))


def _spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tdauto.cli", *argv],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=REPO,
    )


@pytest.fixture
def cluster(redis_url: str, data_dir: Path, system: AutomationSystems) -> Iterator[Cluster]:
    """A cpu worker per host (2 slots each), a storage worker on host-c (the idle pool that
    can be lent), and a beat; ready when every host has weight."""
    logs = data_dir / "logs-cluster"
    logs.mkdir(parents=True, exist_ok=True)
    groups: dict[str, list[subprocess.Popen[bytes]]] = {}
    for host in HOSTS:
        env = cli_env(redis_url, data_dir, TDAUTO_HOST=host, **ENV)
        pools = ["cpu", "storage"] if host == "host-c" else ["cpu"]
        groups[host] = [_spawn(["worker", p], env, logs / f"{host}-{p}.log") for p in pools]
    beat = _spawn(["beat"], cli_env(redis_url, data_dir, **ENV), logs / "beat.log")
    c = Cluster(groups, beat, logs)
    stop = threading.Event()

    def watch() -> None:  # records every weights record the manager writes
        while not stop.is_set():
            try:
                record = system.store.weights()
            except Exception:
                record = None
            if record and (not c.seen or c.seen[-1]["tick"] != record["tick"]):
                c.seen.append(record)
            stop.wait(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        wait_for(
            lambda: bool(c.seen) and all(c.weight(c.seen[-1], h) > 0 for h in HOSTS),
            120,
            "weights for every host",
        )
        yield c
    except AssertionError:
        print(c.logs_tail())
        raise
    finally:
        stop.set()
        stop_processes([*itertools.chain(*groups.values()), beat], 10)


def make_task(
    system: AutomationSystems, name: str, seconds: float, cpu: float = 0, priority: int = 5
) -> str:
    task = asyncio.run(
        system.create_task(
            name=name,
            type=ProcessType.OPTIMIZATION,
            schedule=ScheduleType.DAILY,
            schedule_config={"hour": 2},
            actions=[{"type": "sleep", "params": {"seconds": seconds}}],
            resources={"cpu": cpu},
            overlap="allow",
            priority=priority,
        )
    )
    return task.id


def finished(
    system: AutomationSystems, runs: list[Execution], timeout: float = 180
) -> list[Execution]:
    done = [system.wait_sync(r.id, timeout=timeout) for r in runs]
    assert [d.status for d in done] == [S.SUCCEEDED] * len(done), [d.error for d in done]
    return done


def start_ts(e: Execution) -> float:
    started = e.actions[0].started_at
    assert started is not None
    return started.timestamp()


def test_sixty_percent_never_runs_twice_on_one_host_and_the_extra_one_waits(
    system: AutomationSystems, cluster: Cluster
) -> None:
    task_id = make_task(system, "heavy", seconds=3, cpu=60)
    done = finished(system, [system.trigger_sync(task_id) for _ in range(4)])
    spans: dict[str, list[tuple[float, float]]] = {}
    for d in done:
        a = d.actions[0]
        assert a.host in HOSTS and a.finished_at is not None
        spans.setdefault(a.host, []).append((start_ts(d), a.finished_at.timestamp()))
    for host, host_spans in spans.items():
        ordered = sorted(host_spans)
        assert all(b[0] >= a[1] - 0.05 for a, b in itertools.pairwise(ordered)), (host, ordered)
    # four actions of 60% on three hosts: one of them had to wait for room, and then ran
    assert any(d.actions[0].waiting_since is not None for d in done)
    wait_for(lambda: system.store.reservations() == {}, 30, "reservations released")


def run_until_running(system: AutomationSystems, task_id: str) -> Execution | None:
    """Trigger the task and return its execution once its action runs."""
    run = system.trigger_sync(task_id)
    wait_for(
        lambda: (
            (e := system.get_execution_sync(run.id)) is not None
            and e.actions[0].status is S.RUNNING
        ),
        60,
        "the action running",
    )
    return system.get_execution_sync(run.id)


def test_a_busy_host_loses_weight_within_two_ticks_and_regains_it_when_idle(
    system: AutomationSystems, cluster: Cluster
) -> None:
    task_id = make_task(system, "busy", seconds=6, cpu=80)
    running = run_until_running(system, task_id)
    assert running is not None
    host, started = running.actions[0].host, start_ts(running)
    assert host in HOSTS
    # 80% reserved leaves at most 20% free on each of its two slots: a weight of 40 at most
    # (idle hosts weigh up to 200; the machine's own CPU load moves that, not below 40 here)
    idle = [r for r in cluster.seen if r["at"] < started]
    assert idle and cluster.weight(idle[-1], host) > 40

    def ticks_after(ts: float) -> list[dict[str, Any]]:
        return [r for r in cluster.seen if r["at"] > ts]

    wait_for(
        lambda: any(cluster.weight(r, host) <= 40 for r in ticks_after(started)),
        60,
        "the busy host's weight to drop",
    )
    after = ticks_after(started)
    dropped_at = next(i for i, r in enumerate(after) if cluster.weight(r, host) <= 40)
    assert dropped_at <= 1, [(r["tick"], cluster.weight(r, host)) for r in after]
    others = [h for h in HOSTS if h != host]
    assert all(cluster.weight(after[dropped_at], h) > 0 for h in others)

    done = finished(system, [running])[0]
    ended = done.actions[0].finished_at
    assert ended is not None

    def idle_again(r: dict[str, Any]) -> bool:
        e = r["classes"]["cpu"][host]
        return e["weight"] > 0 and e["slots"] == 2 and e["reserved_percent"] == 0

    wait_for(
        lambda: any(idle_again(r) for r in ticks_after(ended.timestamp())),
        60,
        "the host's weight back once idle",
    )
    regained_at = next(i for i, r in enumerate(ticks_after(ended.timestamp())) if idle_again(r))
    assert regained_at <= 1


def _lent(system: AutomationSystems, node: str) -> set[str]:
    replies = system.app.control.inspect(destination=[node], timeout=2).active_queues() or {}
    return {q["name"] for q in replies.get(node, [])}


def test_a_backlog_gets_a_spill_over_consumer_removed_once_it_drains(
    system: AutomationSystems, cluster: Cluster
) -> None:
    task_id = make_task(system, "flood", seconds=2)
    runs = [system.trigger_sync(task_id) for _ in range(16)]
    node = "storage@host-c"
    wait_for(
        lambda: any(
            d["kind"] == "add_consumer" and d["node"] == node and d["ok"]
            for d in system.store.decisions(200)
        ),
        90,
        "the idle storage pool lent to the cpu backlog",
    )
    assert "tdauto.cpu" in _lent(system, node)
    assert node in system.store.spills()
    finished(system, runs)
    wait_for(
        lambda: any(
            d["kind"] == "cancel_consumer" and d["node"] == node
            for d in system.store.decisions(200)
        ),
        90,
        "the loan taken back once the backlog drained",
    )
    (back,) = [d for d in system.store.decisions(200) if d["kind"] == "cancel_consumer"]
    assert back["ok"] and "drained" in back["detail"]
    assert "tdauto.cpu" not in _lent(system, node)
    assert "tdauto.storage" in _lent(system, node)
    assert system.store.spills() == {}


def test_a_vanished_group_gets_weight_zero_and_its_reservations_are_released(
    system: AutomationSystems, cluster: Cluster
) -> None:
    task_id = make_task(system, "held", seconds=8, cpu=50)
    running = run_until_running(system, task_id)
    assert running is not None and running.actions[0].host in HOSTS
    gone = running.actions[0].host
    assert any(r["host"] == gone for r in system.store.reservations().values())
    for proc in cluster.groups[gone]:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    wait_for(
        lambda: cluster.seen[-1]["classes"]["cpu"].get(gone, {}).get("live") is False,
        90,
        "the vanished host's samples to expire",
    )
    entry = cluster.seen[-1]["classes"]["cpu"][gone]
    assert entry["weight"] == 0 and "no fresh load sample" in entry["reason"]
    assert any(
        d["kind"] == "weight" and d["host"] == gone and d["weight_to"] == 0
        for d in system.store.decisions(200)
    )
    wait_for(
        lambda: all(r["host"] != gone for r in system.store.reservations().values()),
        90,
        "the vanished host's reservations released",
    )
    done = finished(system, [running])[0]
    assert done.actions[0].host != gone and done.actions[0].lost == 1


def test_priority_nine_starts_before_priority_zero_queued_earlier_and_all_run(
    system: AutomationSystems, cluster: Cluster
) -> None:
    blocker = make_task(system, "blocker", seconds=6)
    low = make_task(system, "low", seconds=0.5, priority=0)
    high = make_task(system, "high", seconds=0.5, priority=9)
    # fill every slot (three hosts x two, and the lent storage pool's two) with blockers
    blockers = [system.trigger_sync(blocker) for _ in range(8)]
    wait_for(
        lambda: (
            sum(
                1
                for b in blockers
                if (e := system.get_execution_sync(b.id)) and e.status is S.RUNNING
            )
            >= 6
        ),
        90,
        "every cpu slot busy",
    )
    # and the router knows it: what follows goes to the shared queue, read by every host
    busy_since = time.time()
    wait_for(
        lambda: (
            cluster.seen[-1]["at"] > busy_since
            and all(cluster.weight(cluster.seen[-1], h) == 0 for h in HOSTS)
        ),
        60,
        "every host's weight at 0",
    )
    lows = [system.trigger_sync(low) for _ in range(6)]
    highs = [system.trigger_sync(high) for _ in range(6)]
    done_low, done_high = finished(system, lows), finished(system, highs)
    finished(system, blockers)
    last_high = max(start_ts(e) for e in done_high)
    overtaken = [e for e in done_low if start_ts(e) < last_high]
    # every fetch while a priority-9 message waits takes it; one slot freeing at the same
    # moment as the last one may record its start a hair earlier
    assert len(overtaken) <= 1, sorted((start_ts(e), "low") for e in done_low) + sorted(
        (start_ts(e), "high") for e in done_high
    )


def test_the_memory_pool_replaces_a_child_that_grew_past_its_limit(
    redis_url: str, data_dir: Path, system: AutomationSystems
) -> None:
    log = data_dir / "memory-worker.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    env = cli_env(redis_url, data_dir, TDAUTO_MEMORY_CHILD_MAX_MB="160")
    worker = _spawn(["worker", "memory"], env, log)
    try:
        wait_for(lambda: any(s["pool"] == "memory" for s in system.store.samples()), 90, "worker")
        task = asyncio.run(
            system.create_task(
                name="leaky",
                type=ProcessType.MAINTENANCE,
                schedule=ScheduleType.DAILY,
                schedule_config={"hour": 2},
                actions=[{"type": "hold_memory", "params": {"mb": 0}}],
                resources={"memory": 10},
                overlap="allow",
            )
        )

        def pid(params: dict[str, Any] | None = None) -> int:
            done = finished(system, [system.trigger_sync(task.id, params=params)])[0]
            return int((done.actions[0].output or {})["pid"])

        first, second = pid(), pid()
        assert first == second  # under the limit: the child stays
        grown = pid({"hold_memory": {"mb": 256}})
        assert grown == first
        assert pid() != grown, log.read_text()[-2000:]  # replaced after the task that grew it
    finally:
        stop_processes([worker], 10)
