"""Scheduler scale: tdauto's store scheduler with many tasks, against Celery beat and redbeat.

One run, one private ``redis-server`` (started here on a free port, stopped at the end):

* fire lateness on an idle system (Redis db 1, a data dir of its own): one
  ``tdauto worker cpu``, one ``tdauto worker storage`` and one ``tdauto beat`` subprocess,
  ``--lateness-tasks`` INTERVAL tasks every 5 s running ``cleanup`` (dry run, empty data dir)
  for ``--lateness-s``; lateness = ``actions[0].started_at - scheduled_for`` (p50, p99). It
  bounds "fire time to ``tdauto.run`` starting" from above.
* tdauto (db 0): ``--tasks`` DAILY tasks at random hours and minutes (none within 15 min
  before to 4 h after the start, so nothing comes due during the run), created through the
  async facade ``AutomationSystems.create_task``, ``--batch`` at a time with
  ``asyncio.gather``, in ``--create-procs`` processes (default 1): tasks created per second.
  The default ``--batch 1`` awaits each ``create_task`` before the next: a loop of single
  creations, as redbeat's side is a loop of single ``save()`` calls, so the rates compare
  like for like (``--batch 16`` shows concurrent creations, which redbeat has no way to do).
* a fresh process builds ``StoreScheduler(app)`` (app from ``make_app``, as ``celery beat``
  does) and calls ``tick()`` ``--ticks`` times back to back (leader election included), then
  ``dispatch_due(rt, now)`` + ``store.next_due_ts()`` as often; median and max with nothing
  due, and the process's RSS (psutil) afterwards.
* due to dispatch: ``--due`` INTERVAL tasks (made with the facade's sync helper
  ``_create_task_sync``, whose rate is shown too) get their next run set to a time T
  (``store.set_next_run``); ``dispatch_due`` (``DUE_BATCH`` per call, as ticks do) is then
  called until all are sent through ``runtime_of(app).send``, which publishes ``tdauto.run``
  to Redis as in production. ``dispatch_due`` takes the time as an argument, so each call
  gets ``T + elapsed``: the wall time is exactly from due to the last send, without sleeping
  until T. The messages are counted on the ``tdauto.control`` list afterwards.
* Celery beat: a fresh process builds a ``beat_schedule`` of the same N crontab entries and a
  ``celery.beat.PersistentScheduler`` over it (the time to build the schedule), then times
  ``tick()`` and reads its RSS.
* celery-redbeat: N ``RedBeatSchedulerEntry(...).save()`` (entries per second, same process
  count as tdauto), then a fresh process builds ``RedBeatScheduler``, takes redbeat's lock as
  its ``beat_init`` handler does, times ``tick()`` and reads its RSS.

Both baselines get tdauto's own Celery settings (``celery_config``: same Redis, JSON only,
``beat_max_loop_interval``) but not tdauto's one static system entry. Tick loops stop early
after ``--tick-budget-s`` (Celery beat compares its whole schedule every tick), and say how
many ticks they timed. Heavy modules are imported inside each probe so that no process
carries another system's code. Not a timed test: nothing fails on a number.

    .venv/bin/python benchmarks/scheduler_scale.py [--tasks 100000] [--due 10000]
        [--ticks 200] [--skip-baselines] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import IO, Any

import psutil
from _common import Spawned, clean_env, start_redis, tail

SCRIPT = Path(__file__).resolve()
MiB = 1024 * 1024
NOOP = "bench.noop"
CONTROL = "tdauto.control"
PREFIX = "tdauto"
CLEANUP = {"type": "cleanup", "params": {"older_than": "30days", "dry_run": True}}
EXCLUDE_BEFORE_S = 15 * 60
EXCLUDE_AFTER_S = 4 * 3600
DUE_AHEAD_S = 600.0  # T of the due phase, ahead of now: inside the excluded window


# --- processes ---------------------------------------------------------------------------


class Probe:
    """This script run again as ``--probe KIND``: it prints ``READY`` once set up (and, with
    ``gated``, waits for a line on stdin before the timed part), then ``RESULT <json>``."""

    def __init__(self, kind: str, config: dict[str, Any], work: Path, tag: str, gated=False):
        cfg = work / f"probe-{tag}.json"
        cfg.write_text(json.dumps({**config, "gated": gated}))
        self.kind = kind
        self.log = work / f"probe-{tag}.log"
        with self.log.open("ab") as log:
            self.proc = Spawned.popen(
                [sys.executable, str(SCRIPT), "--probe", kind, "--config", str(cfg)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=clean_env(),
                cwd=work,
            )

    def _line(self, prefix: str) -> str:
        out: IO[bytes] | None = self.proc.stdout
        assert out is not None
        for raw in out:
            line = raw.decode(errors="replace").rstrip("\n")
            if line.startswith(prefix):
                return line[len(prefix) :]
        self.proc.wait()
        raise RuntimeError(
            f"probe {self.kind} exited ({self.proc.returncode}) before {prefix.strip()!r}:\n"
            f"{tail(self.log)}"
        )

    def ready(self) -> None:
        self._line("READY")

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()

    def result(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self._line("RESULT "))
        self.proc.wait()
        return value


def probe(kind: str, config: dict[str, Any], work: Path, tag: str) -> dict[str, Any]:
    return Probe(kind, config, work, tag).result()


def parallel_create(
    kind: str, config: dict[str, Any], n: int, procs: int, work: Path
) -> dict[str, Any]:
    """Creation in ``procs`` processes, each a slice; timed from the go signal to the last."""
    bounds = [round(n * i / procs) for i in range(procs + 1)]
    probes = [
        Probe(kind, {**config, "start": a, "end": b}, work, f"{kind}-{i}", gated=True)
        for i, (a, b) in enumerate(itertools.pairwise(bounds))
    ]
    for p in probes:
        p.ready()
    started = time.perf_counter()
    for p in probes:
        p.go()
    results = [p.result() for p in probes]
    elapsed = time.perf_counter() - started
    created = sum(r["created"] for r in results)
    return {
        "created": created,
        "seconds": elapsed,
        "rate_per_s": created / elapsed if elapsed else None,
        "procs": procs,
        "per_process": results,
    }


# --- measurement helpers -----------------------------------------------------------------


def rss_mib() -> float:
    return psutil.Process().memory_info().rss / MiB


def timed_loop(fn: Any, count: int, budget_s: float, least: int = 5) -> dict[str, Any]:
    """Call ``fn`` up to ``count`` times back to back (fewer, but at least ``least``, once
    ``budget_s`` has passed); milliseconds per call."""
    times: list[float] = []
    started = time.perf_counter()
    for _ in range(count):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
        if len(times) >= least and time.perf_counter() - started > budget_s:
            break
    return {
        "count": len(times),
        "first_ms": times[0],
        "median_ms": statistics.median(times),
        "mean_ms": statistics.fmean(times),
        "max_ms": max(times),
        "max_after_first_ms": max(times[1:]) if len(times) > 1 else None,
    }


def percentile(values: list[float], q: float) -> float | None:
    """Nearest rank."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def pick_times(n: int, seed: int, now_ts: float) -> list[tuple[int, int]]:
    """(hour, minute) UTC pairs, none from 15 min before now to 4 h after."""
    rng = random.Random(seed)
    now_min = int(now_ts // 60) % 1440
    blocked = {
        (now_min + d) % 1440 for d in range(-EXCLUDE_BEFORE_S // 60, EXCLUDE_AFTER_S // 60 + 1)
    }
    allowed = [m for m in range(1440) if m not in blocked]
    return [divmod(rng.choice(allowed), 60) for _ in range(n)]


def daily_task(i: int, hour: int, minute: int) -> dict[str, Any]:
    return {
        "name": f"daily-{i:07d}",
        "type": "maintenance",
        "schedule": "DAILY",
        "schedule_config": {"hour": hour, "minute": minute},
        "actions": [CLEANUP],
    }


def wait_go(cfg: dict[str, Any]) -> None:
    print("READY", flush=True)
    if cfg.get("gated"):
        sys.stdin.readline()


def emit(value: dict[str, Any]) -> None:
    print("RESULT " + json.dumps(value), flush=True)


def load_times(cfg: dict[str, Any]) -> list[tuple[int, int]]:
    pairs = json.loads(Path(cfg["times_file"]).read_text())
    return [(int(h), int(m)) for h, m in pairs]


# --- probes (each in its own process) ----------------------------------------------------


def probe_tdauto_create(cfg: dict[str, Any]) -> None:
    from tdauto.api import AutomationSystems

    system = AutomationSystems(
        broker_url=cfg["url"], data_dir=cfg["data_dir"], key_prefix=cfg["prefix"]
    )
    times = load_times(cfg)
    start, end = cfg["start"], cfg["end"]
    tasks = [daily_task(i, *times[i]) for i in range(start, end)]
    system.store.ping()
    batch = cfg["batch"]

    async def create_all() -> None:
        for b in range(0, len(tasks), batch):
            await asyncio.gather(*(system.create_task(**t) for t in tasks[b : b + batch]))

    wait_go(cfg)
    started = time.perf_counter()
    if cfg["create_mode"] == "async":
        asyncio.run(create_all())
    else:
        for t in tasks:
            system._create_task_sync(t)
    emit({"created": len(tasks), "seconds": time.perf_counter() - started})


def probe_tdauto(cfg: dict[str, Any]) -> None:
    from tdauto.app import make_app, runtime_of
    from tdauto.scheduler import StoreScheduler, dispatch_due
    from tdauto.settings import Settings

    rss_imported = rss_mib()
    started = time.perf_counter()
    settings = Settings(broker_url=cfg["url"], data_dir=cfg["data_dir"], key_prefix=cfg["prefix"])
    app = make_app(settings)
    scheduler = StoreScheduler(app)
    start_s = time.perf_counter() - started
    wait_go(cfg)
    ticks = timed_loop(scheduler.tick, cfg["ticks"], cfg["budget_s"])
    leader = bool(scheduler.leader)
    rt = runtime_of(app)
    sent = 0

    def poll() -> None:
        nonlocal sent
        sent += dispatch_due(rt, time.time())
        rt.store.next_due_ts()

    polls = timed_loop(poll, cfg["ticks"], cfg["budget_s"])
    rss = rss_mib()
    scheduler.close()
    emit(
        {
            "start_s": start_s,
            "tick": ticks,
            "poll": polls,
            "sent_by_polls": sent,
            "leader": leader,
            "rss_mib": rss,
            "rss_after_imports_mib": rss_imported,
        }
    )


def baseline_app(cfg: dict[str, Any]) -> Any:
    from celery import Celery

    app = Celery("bench-baseline", set_as_current=False)
    app.conf.update(cfg["celery_conf"])

    @app.task(name=NOOP, ignore_result=True)
    def noop() -> None:
        return None

    return app


def probe_celery(cfg: dict[str, Any]) -> None:
    from celery.beat import PersistentScheduler
    from celery.schedules import crontab

    app = baseline_app(cfg)
    times = load_times(cfg)
    rss_imported = rss_mib()
    started = time.perf_counter()
    app.conf.beat_schedule = {
        f"daily-{i:07d}": {
            "task": NOOP,
            "schedule": crontab(minute=m, hour=h),
            "options": {"queue": CONTROL},
        }
        for i, (h, m) in enumerate(times)
    }
    dict_s = time.perf_counter() - started
    scheduler = PersistentScheduler(app=app, schedule_filename=cfg["schedule_file"])
    build_s = time.perf_counter() - started
    wait_go(cfg)
    ticks = timed_loop(scheduler.tick, cfg["ticks"], cfg["budget_s"])
    rss = rss_mib()
    entries = len(scheduler.schedule)
    scheduler.close()
    files = list(Path(cfg["schedule_file"]).parent.glob(Path(cfg["schedule_file"]).name + "*"))
    emit(
        {
            "build_s": build_s,
            "beat_schedule_dict_s": dict_s,
            "start_s": build_s - dict_s,
            "entries": entries,
            "tick": ticks,
            "rss_mib": rss,
            "rss_after_imports_mib": rss_imported,
            "schedule_file_mib": sum(f.stat().st_size for f in files) / MiB,
        }
    )


def probe_redbeat_create(cfg: dict[str, Any]) -> None:
    from celery.schedules import crontab
    from redbeat import RedBeatSchedulerEntry
    from redbeat.schedulers import get_redis

    app = baseline_app(cfg)
    times = load_times(cfg)
    get_redis(app).ping()
    start, end = cfg["start"], cfg["end"]
    wait_go(cfg)
    started = time.perf_counter()
    for i in range(start, end):
        h, m = times[i]
        RedBeatSchedulerEntry(
            f"daily-{i:07d}", NOOP, crontab(minute=m, hour=h), options={"queue": CONTROL}, app=app
        ).save()
    emit({"created": end - start, "seconds": time.perf_counter() - started})


def probe_redbeat(cfg: dict[str, Any]) -> None:
    from redbeat import RedBeatScheduler
    from redbeat.schedulers import acquire_distributed_beat_lock

    app = baseline_app(cfg)
    rss_imported = rss_mib()
    started = time.perf_counter()
    scheduler = RedBeatScheduler(app=app)
    # What its beat_init signal handler does when `celery beat` starts: take redbeat's lock,
    # which every tick then extends (tdauto's tick includes its own leader election).
    acquire_distributed_beat_lock(sender=SimpleNamespace(scheduler=scheduler))
    start_s = time.perf_counter() - started
    wait_go(cfg)
    ticks = timed_loop(scheduler.tick, cfg["ticks"], cfg["budget_s"])
    rss = rss_mib()
    scheduler.close()
    emit(
        {
            "start_s": start_s,
            "tick": ticks,
            "rss_mib": rss,
            "rss_after_imports_mib": rss_imported,
        }
    )


PROBES = {
    "tdauto-create": probe_tdauto_create,
    "tdauto": probe_tdauto,
    "celery": probe_celery,
    "redbeat-create": probe_redbeat_create,
    "redbeat": probe_redbeat,
}


# --- redis -------------------------------------------------------------------------------


def with_db(url: str, db: int) -> str:
    return url.rsplit("/", 1)[0] + f"/{db}"


def redis_used_mib(url: str) -> float:
    import redis

    client = redis.Redis.from_url(url)
    try:
        return float(client.info("memory")["used_memory"]) / MiB
    finally:
        client.close()


def keys_mib(url: str, keys: list[str] | None = None, match: str | None = None) -> float:
    """``MEMORY USAGE`` (all samples) summed over ``keys`` and the keys matching ``match``:
    what the schedule itself takes, without the server's buffers that ``used_memory`` counts."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        names = list(keys or [])
        if match:
            names += list(client.scan_iter(match=match, count=1000))
        total = 0
        for i in range(0, len(names), 1000):
            pipe = client.pipeline(transaction=False)
            for name in names[i : i + 1000]:
                pipe.memory_usage(name, samples=0)
            total += sum(int(v or 0) for v in pipe.execute())
        return total / MiB
    finally:
        client.close()


# --- phases in the main process -----------------------------------------------------------


def measure_due(system: Any, url: str, count: int) -> dict[str, Any]:
    """Due to dispatch for ``count`` tasks due at the same T (see the module docstring)."""
    import redis

    from tdauto.app import runtime_of
    from tdauto.scheduler import DUE_BATCH, dispatch_due

    rt = runtime_of(system.app)
    client = redis.Redis.from_url(url)
    started = time.perf_counter()
    ids = [
        system._create_task_sync(
            {
                "name": f"due-{i:06d}",
                "type": "maintenance",
                "schedule": "INTERVAL",
                "schedule_config": {"every": "1d"},
                "misfire_grace": "1h",
                "actions": [CLEANUP],
            }
        ).id
        for i in range(count)
    ]
    create_s = time.perf_counter() - started
    due_ts = float(math.ceil(time.time())) + DUE_AHEAD_S
    for task_id in ids:
        rt.store.set_next_run(task_id, due_ts)
    from tdauto.actions.monitor import redis_queue_depths  # priority lists summed

    queued_before = redis_queue_depths(client)[0][CONTROL]
    sent = 0
    calls: list[float] = []
    started = time.perf_counter()
    while sent < count:
        t = time.perf_counter()
        now = due_ts + (t - started)
        n = dispatch_due(rt, now, DUE_BATCH)
        calls.append((time.perf_counter() - t) * 1000)
        sent += n
        if n == 0 and not rt.store.due(now, 1):
            break
    elapsed = time.perf_counter() - started
    queued = redis_queue_depths(client)[0][CONTROL] - queued_before
    client.close()
    return {
        "tasks": count,
        "sync_create_s": create_s,
        "sync_create_rate_per_s": count / create_s if create_s else None,
        "sent": sent,
        "seconds": elapsed,
        "rate_per_s": sent / elapsed if elapsed else None,
        "dispatch_calls": len(calls),
        "batch": DUE_BATCH,
        "call_max_ms": max(calls) if calls else None,
        "messages_queued": queued,
    }


def measure_lateness(url: str, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Workers and beat as subprocesses through the CLI; see the module docstring."""
    import redis

    from tdauto.api import AutomationSystems
    from tdauto.processes import stop_processes
    from tdauto.store.keys import Keys

    data = work / "lateness-data"
    data.mkdir()
    env = clean_env(TDAUTO_BROKER_URL=url, TDAUTO_DATA_DIR=str(data))
    logs = work / "lateness-logs"
    logs.mkdir()
    system = AutomationSystems(broker_url=url, data_dir=data)
    host = system.settings.host

    def spawn(*argv: str) -> subprocess.Popen[Any]:
        with (logs / f"{'-'.join(argv)}.log").open("ab") as log:
            return Spawned.popen(
                [sys.executable, "-m", "tdauto.cli", *argv],
                cwd=data,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def logs_tail() -> str:
        return "\n".join(f"--- {f.name}\n{tail(f, 15)}" for f in sorted(logs.iterdir()))

    workers = [spawn("worker", pool) for pool in ("cpu", "storage")]
    beat: subprocess.Popen[Any] | None = None
    client = redis.Redis.from_url(url)
    try:
        wanted = {f"cpu@{host}", f"storage@{host}"}
        seen: set[str] = set()
        deadline = time.monotonic() + 120
        while not wanted <= seen:
            for reply in system.app.control.ping(timeout=0.5) or []:
                seen.update(reply)
            if time.monotonic() > deadline or any(w.poll() is not None for w in workers):
                raise RuntimeError(f"workers not ready (seen {seen}):\n{logs_tail()}")
        beat = spawn("beat")
        leader_key = Keys(system.settings.key_prefix).beat_leader
        while client.get(leader_key) is None:
            if time.monotonic() > deadline or beat.poll() is not None:
                raise RuntimeError(f"beat never took the leader lock:\n{logs_tail()}")
            time.sleep(0.1)

        async def create() -> list[Any]:
            return await asyncio.gather(
                *(
                    system.create_task(
                        name=f"late-{i:02d}",
                        type="maintenance",
                        schedule="INTERVAL",
                        schedule_config={"every": 5},
                        actions=[CLEANUP],
                    )
                    for i in range(args.lateness_tasks)
                )
            )

        task_ids = {t.id for t in asyncio.run(create())}
        time.sleep(args.lateness_s)
        stop_processes([beat])
        drain_until = time.monotonic() + 15
        while time.monotonic() < drain_until:
            open_ = [
                e
                for e in system.store.list_executions(limit=None)
                if e.task_id in task_ids and not e.status.terminal
            ]
            if not open_:
                break
            time.sleep(0.2)
    finally:
        stop_processes([p for p in [beat, *workers] if p is not None])
        client.close()

    executions = [e for e in system.store.list_executions(limit=None) if e.task_id in task_ids]
    late_ms = [
        (e.actions[0].started_at - e.scheduled_for).total_seconds() * 1000
        for e in executions
        if e.scheduled_for is not None and e.actions and e.actions[0].started_at is not None
    ]
    statuses: dict[str, int] = {}
    for e in executions:
        statuses[e.status.value] = statuses.get(e.status.value, 0) + 1
    system.store.close()
    return {
        "tasks": args.lateness_tasks,
        "every_s": 5,
        "seconds": args.lateness_s,
        "executions": len(executions),
        "started": len(late_ms),
        "statuses": statuses,
        "p50_ms": percentile(late_ms, 50),
        "p99_ms": percentile(late_ms, 99),
        "max_ms": max(late_ms) if late_ms else None,
        "min_ms": min(late_ms) if late_ms else None,
    }


# --- report ------------------------------------------------------------------------------

# (label, key, digits, ratio?)
ROWS: list[tuple[str, str, int, bool]] = [
    ("tasks created /s", "create_rate", 0, True),
    ("create N tasks, s", "create_s", 1, True),
    ("  sync helper _create_task_sync /s", "sync_create_rate", 0, False),
    ("schedule storage, MiB", "storage_mib", 1, True),
    ("scheduler start, s", "start_s", 3, True),
    ("first tick, ms", "tick_first_ms", 2, True),
    ("tick median, ms (nothing due)", "tick_median_ms", 3, True),
    ("tick max, ms (nothing due)", "tick_max_ms", 2, True),
    ("tick max after the first, ms", "tick_max_after_first_ms", 2, True),
    ("ticks timed", "ticks", 0, False),
    ("dispatch_due+next_due_ts median, ms", "poll_median_ms", 3, False),
    ("dispatch_due+next_due_ts max, ms", "poll_max_ms", 2, False),
    ("due -> dispatch of {due}, s", "due_s", 2, True),
    ("dispatch rate /s", "due_rate", 0, True),
    ("scheduler RSS, MiB", "rss_mib", 1, True),
    ("fire lateness p50, ms (idle)", "late_p50_ms", 1, True),
    ("fire lateness p99, ms (idle)", "late_p99_ms", 1, True),
]


def metrics(report: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    t = report["tdauto"]
    out: dict[str, dict[str, float | None]] = {"tdauto": {}, "celery": {}, "redbeat": {}}
    m = out["tdauto"]
    m["create_rate"] = t["create"]["rate_per_s"]
    m["create_s"] = t["create"]["seconds"]
    m["storage_mib"] = t["create"].get("keys_mib")
    m["start_s"] = t["scheduler"]["start_s"]
    m["tick_first_ms"] = t["scheduler"]["tick"]["first_ms"]
    m["tick_median_ms"] = t["scheduler"]["tick"]["median_ms"]
    m["tick_max_ms"] = t["scheduler"]["tick"]["max_ms"]
    m["tick_max_after_first_ms"] = t["scheduler"]["tick"]["max_after_first_ms"]
    m["ticks"] = t["scheduler"]["tick"]["count"]
    m["poll_median_ms"] = t["scheduler"]["poll"]["median_ms"]
    m["poll_max_ms"] = t["scheduler"]["poll"]["max_ms"]
    m["rss_mib"] = t["scheduler"]["rss_mib"]
    if t.get("due"):
        m["due_s"] = t["due"]["seconds"]
        m["due_rate"] = t["due"]["rate_per_s"]
        m["sync_create_rate"] = t["due"]["sync_create_rate_per_s"]
    late = report.get("lateness")
    if late:
        m["late_p50_ms"] = late["p50_ms"]
        m["late_p99_ms"] = late["p99_ms"]
    c = report.get("celery")
    if c:
        out["celery"] = {
            "create_rate": report["tasks"] / c["build_s"],
            "create_s": c["build_s"],
            "storage_mib": c["schedule_file_mib"],
            "start_s": c["start_s"],
            "tick_first_ms": c["tick"]["first_ms"],
            "tick_median_ms": c["tick"]["median_ms"],
            "tick_max_ms": c["tick"]["max_ms"],
            "tick_max_after_first_ms": c["tick"]["max_after_first_ms"],
            "ticks": c["tick"]["count"],
            "rss_mib": c["rss_mib"],
        }
    r = report.get("redbeat")
    if r:
        out["redbeat"] = {
            "create_rate": r["create"]["rate_per_s"],
            "create_s": r["create"]["seconds"],
            "storage_mib": r["create"].get("keys_mib"),
            "start_s": r["scheduler"]["start_s"],
            "tick_first_ms": r["scheduler"]["tick"]["first_ms"],
            "tick_median_ms": r["scheduler"]["tick"]["median_ms"],
            "tick_max_ms": r["scheduler"]["tick"]["max_ms"],
            "tick_max_after_first_ms": r["scheduler"]["tick"]["max_after_first_ms"],
            "ticks": r["scheduler"]["tick"]["count"],
            "rss_mib": r["scheduler"]["rss_mib"],
        }
    return out


def fmt(value: float | None, digits: int) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}"


def print_table(report: dict[str, Any]) -> None:
    m = report["metrics"]
    skipped = report["skip_baselines"]
    head = ["measure", "tdauto", "celery beat", "redbeat", "tdauto/beat", "tdauto/redbeat"]
    rows = []
    for label, key, digits, has_ratio in ROWS:
        t = m["tdauto"].get(key)
        row = [label.format(due=report["due"]), fmt(t, digits)]
        for base in ("celery", "redbeat"):
            row.append("skipped" if skipped else fmt(m[base].get(key), digits))
        for base in ("celery", "redbeat"):
            b = m[base].get(key)
            if skipped:
                row.append("skipped")
            elif has_ratio and t is not None and b:
                row.append(f"{t / b:.3g}")
            else:
                row.append("n/a")
        rows.append(row)
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    create = report["tdauto"]["create"]
    print(
        f"scheduler scale: N = {report['tasks']:,} DAILY tasks, {report['cpus']} CPUs, "
        f"Python {report['python']}"
    )
    if report["create_mode"] != "async":
        how = "calling the facade's sync helper _create_task_sync in a loop"
    elif report["batch"] == 1:
        how = "awaiting the async create_task in a loop, one at a time"
    else:
        how = f"awaiting the async create_task, {report['batch']} at a time (asyncio.gather)"
    print(
        f"tdauto tasks created by {how}, in {create['procs']} process(es); redbeat's by "
        "RedBeatSchedulerEntry(...).save() in a loop, one at a time, same Redis"
    )
    print(
        "ratio = tdauto / baseline: > 1 means tdauto is slower (s, ms), bigger (MiB), faster (/s)"
    )
    print("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(
            "  ".join(
                c.rjust(w) if i else c.ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    print(
        "create: tdauto create_task; celery beat: the beat_schedule dict of crontab entries + "
        "PersistentScheduler(...) (shelve written); redbeat: RedBeatSchedulerEntry(...).save()"
    )
    print(
        "storage: MEMORY USAGE of the schedule's Redis keys (celery beat: its shelve file); "
        "start: building the scheduler in a fresh process; RSS: that process after its ticks"
    )
    due = report["tdauto"].get("due")
    if due:
        print(
            f"due: {due['sent']:,} of {due['tasks']:,} sent in {due['dispatch_calls']} "
            f"dispatch_due calls of <= {due['batch']} (slowest {due['call_max_ms']:.0f} ms); "
            f"{due['messages_queued']:,} tdauto.run messages on {CONTROL}"
        )
    late = report.get("lateness")
    if late:
        print(
            f"lateness: {late['started']} of {late['executions']} executions started "
            f"({late['tasks']} tasks every {late['every_s']} s for {late['seconds']:g} s; "
            f"statuses {late['statuses']}); min {fmt(late['min_ms'], 1)} ms, "
            f"max {fmt(late['max_ms'], 1)} ms"
        )
    sched = report["tdauto"]["scheduler"]
    print(
        f"tdauto scheduler: leader during ticks = {sched['leader']}, "
        f"sent by nothing-due polls = {sched['sent_by_polls']}"
    )
    phases = ", ".join(f"{k} {v:.1f}" for k, v in report["phase_s"].items())
    load = " -> ".join(
        "/".join(f"{x:.2f}" for x in report[k]) for k in ("loadavg_start", "loadavg_end")
    )
    print(f"phase times, s: {phases}; load average (1/5/15 min): {load}")


# --- main --------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    from tdauto.api import AutomationSystems
    from tdauto.app import SETTINGS_KEY, celery_config
    from tdauto.settings import Settings
    from tdauto.store.keys import Keys

    report: dict[str, Any] = {
        "benchmark": "scheduler_scale",
        "tasks": args.tasks,
        "due": args.due,
        "ticks": args.ticks,
        "batch": args.batch,
        "create_mode": args.create,
        "skip_baselines": args.skip_baselines,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "phase_s": {},
        "loadavg_start": os.getloadavg(),
    }
    work = Path(tempfile.mkdtemp(prefix="tdauto-bench-scale-"))
    server = None
    phase_started = time.perf_counter()

    def phase(name: str) -> None:
        nonlocal phase_started
        now = time.perf_counter()
        report["phase_s"][name] = now - phase_started
        phase_started = now
        if not args.json:
            print(f"  {name}: {report['phase_s'][name]:.1f} s", file=sys.stderr, flush=True)

    try:
        server = start_redis(work / "redis", track=True)
        url = server.url
        times = pick_times(args.tasks, args.seed, time.time())
        times_file = work / "times.json"
        times_file.write_text(json.dumps(times))
        data_dir = work / "data"
        common = {"url": url, "prefix": PREFIX, "data_dir": str(data_dir)}
        common.update(times_file=str(times_file), ticks=args.ticks, budget_s=args.tick_budget_s)
        phase("redis start")

        if args.lateness_s > 0:
            report["lateness"] = measure_lateness(with_db(url, 1), work, args)
            phase("lateness")

        used = redis_used_mib(url)
        create = parallel_create(
            "tdauto-create",
            {**common, "batch": args.batch, "create_mode": args.create},
            args.tasks,
            args.create_procs,
            work,
        )
        create["redis_used_delta_mib"] = redis_used_mib(url) - used
        schema = Keys(PREFIX)
        create["keys_mib"] = keys_mib(
            url, [schema.tasks, schema.task_names, schema.task_state, schema.due]
        )
        report["tdauto"] = {"create": create}
        phase("tdauto create")
        report["tdauto"]["scheduler"] = probe("tdauto", common, work, "tdauto")
        phase("tdauto ticks")
        if args.due > 0:
            system = AutomationSystems(broker_url=url, data_dir=data_dir, key_prefix=PREFIX)
            report["tdauto"]["due"] = measure_due(system, url, args.due)
            system.store.close()
            phase("tdauto due")

        if not args.skip_baselines:
            conf = celery_config(Settings(data_dir=work / "baseline", broker_url=url))
            del conf[SETTINGS_KEY]
            conf.update(redbeat_redis_url=url, redbeat_redis_options={})
            conf.update(redbeat_key_prefix="redbeat:")
            base = {**common, "celery_conf": conf}
            base["schedule_file"] = str(work / "celerybeat-schedule")
            report["celery"] = probe("celery", base, work, "celery")
            phase("celery beat")
            used = redis_used_mib(url)
            rb_create = parallel_create("redbeat-create", base, args.tasks, args.create_procs, work)
            rb_create["redis_used_delta_mib"] = redis_used_mib(url) - used
            rb_create["keys_mib"] = keys_mib(url, ["redbeat::schedule"], "redbeat:daily-*")
            report["redbeat"] = {"create": rb_create}
            phase("redbeat create")
            report["redbeat"]["scheduler"] = probe("redbeat", base, work, "redbeat")
            phase("redbeat ticks")
        report["redis_used_mib"] = redis_used_mib(url)
    finally:
        if server is not None:
            server.stop()
        Spawned.kill_all()
        shutil.rmtree(work, ignore_errors=True)
    report["loadavg_end"] = os.getloadavg()
    report["metrics"] = metrics(report)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=100_000, help="N enabled DAILY tasks.")
    parser.add_argument("--due", type=int, default=10_000, help="Tasks due in the same second.")
    parser.add_argument("--ticks", type=int, default=200, help="Ticks timed per scheduler.")
    parser.add_argument(
        "--tick-budget-s", type=float, default=30.0, help="Stop a tick loop after this long."
    )
    parser.add_argument(
        "--create",
        choices=("async", "sync"),
        default="async",
        help="async: await create_task, --batch per gather; sync: _create_task_sync in a loop.",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=1,
        help="create_task calls per gather (1: each awaited before the next, like redbeat's "
        "loop of save() calls).",
    )
    parser.add_argument("--create-procs", type=int, default=1, help="Processes creating tasks.")
    parser.add_argument("--skip-baselines", action="store_true", help="tdauto only.")
    parser.add_argument("--lateness-s", type=float, default=60.0, help="0 skips the phase.")
    parser.add_argument("--lateness-tasks", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="Print the report as JSON.")
    parser.add_argument("--probe", choices=sorted(PROBES), help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        PROBES[args.probe](json.loads(Path(args.config).read_text()))
        return 0
    if args.tasks < 1 or args.ticks < 1 or args.batch < 1 or args.create_procs < 1:
        parser.error("--tasks, --ticks, --batch and --create-procs must be at least 1")
    # Settings read TDAUTO_* variables: clear them so every process here sees the defaults.
    for key in [k for k in os.environ if k.startswith("TDAUTO_")]:
        del os.environ[key]
    report = run(args)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
