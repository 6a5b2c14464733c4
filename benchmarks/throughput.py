"""Throughput: executions per second and Redis commands per action, tdauto against bare Celery.

One run, one private ``redis-server`` (tests/support's ``RedisServer``, started here on a free
port, stopped at the end), one worker process at a time (started in its own session, its
process group killed at the end), the baseline first, then tdauto, Redis flushed between them:

* baseline: bare Celery with tdauto's Celery settings (``tdauto.app.celery_config`` minus the
  ``tdauto_*`` keys: JSON only, ``task_acks_late``, ``task_reject_on_worker_lost``, prefetch 1,
  task events on, results ignored) and the exact worker command line of tdauto's cpu pool
  (``workers/cpu.py``: prefork, ``--concurrency`` = ``TDAUTO_CONCURRENCY_CPU``, the queues
  ``tdauto.cpu``, ``tdauto.cpu.<host>``, ``tdauto.control``, ``--task-events``, no gossip or
  mingle). Its task ``bench.noop`` does one ``INCR`` of a counter: that is how completions
  are counted, and the only bookkeeping it has. ``--n`` tasks are sent with
  ``app.send_task(..., queue="tdauto.cpu")`` in a loop, timed from the first send until the
  counter reaches n; then a Celery ``chain`` of ``--chain`` immutable ``bench.noop``
  signatures, timed from ``apply_async`` to the last link's ``INCR``.
* tdauto: one ``python -m tdauto.cli worker cpu`` (``TDAUTO_PLUGINS=benchmarks.noop_plugin``
  registers the ``noop`` action, which returns ``{}``). A task with one ``noop`` action and
  ``overlap="allow"`` (the default ``skip`` would skip runs that overlap) is triggered ``--n``
  times from application code, ``AutomationSystems.trigger_sync`` in a loop (``--trigger
  async``: ``await trigger`` in ``asyncio.gather`` batches of ``--batch``), timed from the
  first trigger until ``ZCARD`` of the store's SUCCEEDED status index reaches n. Then one
  execution of a task with ``--chain`` ``noop`` actions, timed from the trigger to SUCCEEDED.

The ``--n`` runs are repeated in ``--rounds`` rounds (default 3), baseline and tdauto
alternating, each round with fresh workers and a flushed Redis; the executions/s ratio of
each round and their median are printed (a shared machine drifts by more than the effects
measured here; the median of alternating rounds is the figure to quote). The long run, the
CPU and command counts and the trace are from round 1.

Both sides get ``--warmup`` runs first (not timed). The CPU time each process uses during the
n runs (this process, the worker's main process, its pool children, ``redis-server``) is read
with ``psutil`` before and after and printed per execution. ``INFO commandstats`` and the
network byte counters are read just before and after each timed run; the benchmark's own polling
(``ZCARD`` / ``GET``, counted) and the baseline's ``INCR`` are removed from the counts, so
the baseline's numbers are Celery's broker traffic and tdauto's minus the baseline's are what
tdauto adds. Then (unless ``--no-trace``) one more execution runs alone under ``MONITOR`` and
is printed command by command, per process (app, worker main process, pool child), with the
commands Lua scripts run shown inside ``[...]`` after their ``EVALSHA``, and counted as store
(tdauto's keys and scripts) or broker (Celery's queues, acks and events).

Not a timed test: nothing fails on a number. It exits 1 if a run did not finish or an
execution ended other than SUCCEEDED.

    .venv/bin/python benchmarks/throughput.py [--n 5000] [--chain 1000] [--json]

The default run takes about 4 minutes on 2 CPUs, most of it the 1,000-action execution.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
import redis  # noqa: E402
from _common import Spawned, clean_env, tail  # noqa: E402
from celery import Celery, chain  # noqa: E402

from tdauto import AutomationSystems, ExecutionStatus  # noqa: E402
from tdauto.app import celery_config  # noqa: E402
from tdauto.resources.pools import load_pool  # noqa: E402
from tdauto.settings import Settings  # noqa: E402

BIN = Path(sys.executable).parent
HOST = "bench"
PLUGIN = "benchmarks.noop_plugin"
QUEUE = "tdauto.cpu"
NOOP = "bench.noop"
COUNTER = "bench:done"
POLL_S = 0.02
STOP_TOKEN = "bench-monitor-stop"
OWN_COMMANDS = ("info",)  # the benchmark's own snapshots, never counted
CPU_ROLES = {
    "app": "app (trigger / send loop, poller)",
    "worker": "worker main process",
    "pool": "pool children (task bodies)",
    "redis": "redis-server",
}


# --- processes ---------------------------------------------------------------------------


def start_worker(
    argv: list[str], env: dict[str, str], log: Path, app: Celery, name: str, timeout_s: float
) -> subprocess.Popen[bytes]:
    """Spawn a worker and wait until ``name`` answers ``app.control.ping``."""
    with log.open("ab") as out:
        proc = Spawned.popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout_s
    while True:
        if any(name in reply for reply in app.control.ping(timeout=0.5) or []):
            return proc
        if proc.poll() is not None or time.monotonic() > deadline:
            Spawned.stop(proc, 5)
            raise RuntimeError(f"worker {name} never answered a ping:\n{tail(log, 30)}")


def worker_argv(settings: Settings, node: str, loglevel: str) -> list[str]:
    """The cpu pool's Celery worker arguments (``workers/cpu.py``) under node name ``node``."""
    argv = load_pool("cpu").worker_argv(settings, loglevel)
    argv[argv.index("--hostname") + 1] = node
    return argv


# --- redis counters ----------------------------------------------------------------------


def snapshot(r: redis.Redis) -> dict[str, Any]:
    commandstats: Any = r.info("commandstats")
    calls = {name.removeprefix("cmdstat_"): int(row["calls"]) for name, row in commandstats.items()}
    stats: Any = r.info("stats")
    return {
        "calls": calls,
        "in_bytes": int(stats["total_net_input_bytes"]),
        "out_bytes": int(stats["total_net_output_bytes"]),
    }


def delta(after: dict[str, Any], before: dict[str, Any], own: dict[str, int]) -> dict[str, Any]:
    """Commands (and bytes) between two snapshots, minus the benchmark's own ``own`` calls."""
    calls = Counter(after["calls"])
    calls.subtract(before["calls"])
    calls.subtract(own)
    for name in OWN_COMMANDS:
        calls.pop(name, None)
    kept = {k: v for k, v in calls.items() if v}
    return {
        "calls": dict(sorted(kept.items(), key=lambda kv: -kv[1])),
        "total": sum(kept.values()),
        "in_bytes": after["in_bytes"] - before["in_bytes"],
        "out_bytes": after["out_bytes"] - before["out_bytes"],
    }


def wait_count(
    read: Callable[[], int], target: int, timeout_s: float
) -> tuple[float | None, int, int]:
    """Poll ``read()`` every ``POLL_S`` until it reaches ``target``: (monotonic time it was
    seen there or None on timeout, polls made, last value)."""
    deadline = time.monotonic() + timeout_s
    polls = 0
    while True:
        value = read()
        polls += 1
        now = time.monotonic()
        if value >= target:
            return now, polls, value
        if now > deadline:
            return None, polls, value
        time.sleep(POLL_S)


class Progress(threading.Thread):
    """Polls ``read()`` every ``POLL_S`` from ``start()`` until it reaches ``target`` (or
    ``timeout_s`` passes), remembering when each value was seen."""

    def __init__(self, read: Callable[[], int], target: int, timeout_s: float) -> None:
        super().__init__(daemon=True)
        self.read, self.target, self.timeout_s = read, target, timeout_s
        self.samples: list[tuple[float, int]] = []
        self.done_at: float | None = None

    def run(self) -> None:
        deadline = time.monotonic() + self.timeout_s
        while True:
            value = self.read()
            now = time.monotonic()
            self.samples.append((now, value))
            if value >= self.target:
                self.done_at = now
                return
            if now > deadline:
                return
            time.sleep(POLL_S)

    @property
    def polls(self) -> int:
        return len(self.samples)

    @property
    def last(self) -> int:
        return self.samples[-1][1] if self.samples else 0

    def middle_rate(self, base: int, count: int) -> float | None:
        """Completions per second from 10 % to 90 % done: the steady rate, without the
        ramp-up and the drain."""
        lo, hi = base + max(1, count // 10), base + max(1, count * 9 // 10)
        t_lo = next((t for t, v in self.samples if v >= lo), None)
        t_hi = next((t for t, v in self.samples if v >= hi), None)
        if t_lo is None or t_hi is None or t_hi <= t_lo:
            return None
        return (hi - lo) / (t_hi - t_lo)


def cpu_seconds(worker_pid: int, redis_pid: int) -> dict[str, float]:
    """CPU time (user + system) used so far by this process (``app``: the sending side),
    the worker's main process, its pool children together and ``redis-server``."""

    def used(proc: psutil.Process) -> float:
        try:
            times = proc.cpu_times()
        except psutil.Error:  # a pool child that just exited
            return 0.0
        return float(times.user + times.system)

    worker = psutil.Process(worker_pid)
    try:
        children = worker.children()
    except psutil.Error:
        children = []
    return {
        "app": used(psutil.Process()),
        "worker": used(worker),
        "pool": sum(used(c) for c in children),
        "redis": used(psutil.Process(redis_pid)),
    }


def measure(
    send: Callable[[], None],
    read: Callable[[], int],
    count: int,
    timeout_s: float,
    cpu: Callable[[], dict[str, float]] | None = None,
) -> dict[str, Any]:
    """Send, then wait until ``read()`` grew by ``count``: timings, the poller's count and
    (``cpu``) the CPU seconds each process used meanwhile."""
    base = read()
    progress = Progress(read, base + count, timeout_s)
    cpu_before = cpu() if cpu else {}
    start = time.monotonic()
    progress.start()
    send()
    sent_at = time.monotonic()
    progress.join()
    elapsed = time.monotonic() - start
    wall = None if progress.done_at is None else progress.done_at - start
    cpu_after = cpu() if cpu else {}
    return {
        "cpu_s": {k: cpu_after[k] - v for k, v in cpu_before.items()},
        "count": count,
        "completed": progress.last - base,
        "finished": progress.done_at is not None,
        "wall_s": wall,
        "elapsed_s": elapsed,
        "per_s": count / wall if wall else (progress.last - base) / elapsed,
        "middle_per_s": progress.middle_rate(base, count),
        "send_s": sent_at - start,
        "polls": progress.polls,
    }


# --- baseline: bare Celery ---------------------------------------------------------------

BASELINE_MODULE = '''\
"""Bare Celery with tdauto's settings (generated by benchmarks/throughput.py)."""

import json

import redis
from celery import Celery

CONF = json.loads({conf!r})
app = Celery("baseline")
app.conf.update(CONF)
_client = []


@app.task(name={name!r}, ignore_result=True)
def noop():
    """Counts its completion with one INCR: the baseline's only bookkeeping."""
    if not _client:
        _client.append(redis.Redis.from_url(CONF["broker_url"]))
    _client[0].incr({key!r})
'''


def baseline_conf(url: str, data: Path) -> dict[str, Any]:
    conf = celery_config(Settings(broker_url=url, data_dir=data, host=HOST))
    conf = {k: v for k, v in conf.items() if not k.startswith("tdauto_")}
    json.dumps(conf)  # all of it must survive the trip through the generated module
    return conf


def run_baseline(
    url: str, work: Path, args: argparse.Namespace, full: bool = True
) -> dict[str, Any]:
    """``full``: also the chain (else only the ``--n`` runs: a later round)."""
    data = work / "baseline"
    data.mkdir()
    conf = baseline_conf(url, data)
    (data / "bench_throughput_baseline.py").write_text(
        BASELINE_MODULE.format(conf=json.dumps(conf), name=NOOP, key=COUNTER)
    )
    settings = Settings(broker_url=url, data_dir=data, host=HOST, concurrency_cpu=args.concurrency)
    node = f"baseline-cpu@{HOST}"
    argv = [str(BIN / "celery"), "-A", "bench_throughput_baseline"]
    argv += worker_argv(settings, node, args.loglevel)
    client = Celery("baseline-client", set_as_current=False)
    client.conf.update(conf)

    @client.task(name=NOOP, ignore_result=True)
    def noop() -> None:  # the worker's task under the same name, so signatures resolve
        return None

    r = redis.Redis.from_url(url, single_connection_client=True)

    def done() -> int:
        value: Any = r.get(COUNTER)
        return int(value or 0)

    def send() -> None:
        client.send_task(NOOP, queue=QUEUE, routing_key=QUEUE)

    proc = start_worker(
        argv, clean_env(PYTHONPATH=str(data)), work / "baseline-worker.log", client, node, 60
    )
    out: dict[str, Any] = {"worker_argv": argv}
    try:
        for _ in range(args.warmup):
            send()
        wait_count(done, args.warmup, args.timeout)

        def send_all() -> None:
            for _ in range(args.n):
                send()

        before = snapshot(r)
        out["run"] = measure(
            send_all, done, args.n, args.timeout, lambda: cpu_seconds(proc.pid, args.redis_pid)
        )
        after = snapshot(r)
        own = {"get": out["run"]["polls"], "incrby": out["run"]["completed"]}
        out["run"]["redis"] = delta(after, before, own)

        if not full:
            return out
        options = {"queue": QUEUE, "routing_key": QUEUE}
        links = chain(
            *[client.signature(NOOP, options=options, immutable=True) for _ in range(args.chain)]
        )
        before = snapshot(r)
        out["chain"] = measure(links.apply_async, done, args.chain, args.chain_timeout)
        after = snapshot(r)
        own = {"get": out["chain"]["polls"], "incrby": out["chain"]["completed"]}
        out["chain"]["redis"] = delta(after, before, own)
    finally:
        Spawned.stop(proc)
        r.close()
        client.close()
    return out


# --- tdauto ------------------------------------------------------------------------------


def status_counts(r: redis.Redis, system: AutomationSystems) -> dict[str, int]:
    keys = system.store.keys
    counts: dict[str, int] = {}
    for status in ExecutionStatus:
        count: Any = r.zcard(keys.status_executions(status.value))
        if count:
            counts[status.value] = int(count)
    return counts


def trigger_many(
    system: AutomationSystems, task_id: str, count: int, args: argparse.Namespace
) -> None:
    if args.trigger == "sync":
        for _ in range(count):
            system.trigger_sync(task_id)
        return

    async def all_batches() -> None:
        left = count
        while left:
            batch = min(left, args.batch)
            await asyncio.gather(*(system.trigger(task_id) for _ in range(batch)))
            left -= batch

    asyncio.run(all_batches())


def run_tdauto(url: str, work: Path, args: argparse.Namespace, full: bool = True) -> dict[str, Any]:
    """``full``: also the trace and the long run (else only the ``--n`` runs)."""
    data = work / "tdauto"
    data.mkdir()
    system = AutomationSystems(
        broker_url=url,
        data_dir=data,
        plugins=[PLUGIN],
        host=HOST,
        concurrency_cpu=args.concurrency,
    )
    common: dict[str, Any] = {
        "type": "maintenance",
        "schedule": "interval",
        "schedule_config": {"every": "1d"},
    }

    async def create() -> tuple[Any, Any]:
        one = await system.create_task(
            name="bench-noop", actions=[{"type": "noop"}], overlap="allow", **common
        )
        many = await system.create_task(
            name="bench-chain", actions=[{"type": "noop"}] * args.chain, overlap="allow", **common
        )
        return one, many

    task, long_task = asyncio.run(create())
    env = clean_env(
        TDAUTO_BROKER_URL=url,
        TDAUTO_DATA_DIR=str(data),
        TDAUTO_PLUGINS=PLUGIN,
        TDAUTO_HOST=HOST,
        TDAUTO_CONCURRENCY_CPU=str(args.concurrency),
        TDAUTO_WRITE_BEHIND="true" if args.write_behind else "false",
        PYTHONPATH=str(ROOT),
    )
    argv = [sys.executable, "-m", "tdauto.cli", "worker", "cpu", "--loglevel", args.loglevel]
    r = redis.Redis.from_url(url, single_connection_client=True)
    succeeded_key = system.store.keys.status_executions(ExecutionStatus.SUCCEEDED.value)

    def done() -> int:
        count: Any = r.zcard(succeeded_key)
        return int(count)

    proc = start_worker(argv, env, work / "tdauto-worker.log", system.app, f"cpu@{HOST}", 60)
    out: dict[str, Any] = {"worker_argv": argv, "trigger": args.trigger}
    try:
        trigger_many(system, task.id, args.warmup, args)
        wait_count(done, args.warmup, args.timeout)

        before = snapshot(r)
        out["run"] = measure(
            lambda: trigger_many(system, task.id, args.n, args),
            done,
            args.n,
            args.timeout,
            lambda: cpu_seconds(proc.pid, args.redis_pid),
        )
        after = snapshot(r)
        out["run"]["redis"] = delta(after, before, {"zcard": out["run"]["polls"]})

        if not full:
            return out
        if args.trace:
            out["trace"] = trace_one(system, r, task.id, proc.pid, done)

        started: list[Any] = []
        before = snapshot(r)
        out["chain"] = measure(
            lambda: started.append(system.trigger_sync(long_task.id)), done, 1, args.chain_timeout
        )
        after = snapshot(r)
        out["chain"]["redis"] = delta(after, before, {"zcard": out["chain"]["polls"]})
        record = system.get_execution_sync(started[0].id)
        actions_done = sum(a.status is ExecutionStatus.SUCCEEDED for a in record.actions)
        out["chain"].update(count=args.chain, completed=actions_done, status=record.status.value)
        out["chain"]["per_s"] = actions_done / (out["chain"]["wall_s"] or out["chain"]["elapsed_s"])
        out["chain"]["middle_per_s"] = None
        size: Any = r.strlen(system.store.keys.execution(started[0].id))
        out["chain"]["execution_json_bytes"] = int(size)
        out["statuses"] = status_counts(r, system)
    finally:
        Spawned.stop(proc)
        r.close()
        system.app.close()
    return out


# --- one execution under MONITOR -----------------------------------------------------------

_MONITOR_LINE = re.compile(r"^(\S+) \[(\d+) (.*?)\] (.*)$", re.S)
_ARG = re.compile(r'"((?:[^"\\]|\\.)*)"')
_HEX_ID = re.compile(r"[0-9a-f]{32}")


class Monitor(threading.Thread):
    """Records every command Redis runs (``MONITOR``) until it sees ``ECHO STOP_TOKEN``."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.client = redis.Redis.from_url(url, single_connection_client=True)
        self.ready = threading.Event()
        self.rows: list[tuple[float, str, list[str]]] = []

    def run(self) -> None:
        conn = self.client.connection
        assert conn is not None
        conn.send_command("MONITOR")
        conn.read_response()
        self.ready.set()
        while True:
            raw = conn.read_response()
            line = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
            match = _MONITOR_LINE.match(line)
            if not match:
                continue
            ts, _db, source, rest = match.groups()
            argv = [a.replace('\\"', '"') for a in _ARG.findall(rest)]
            if argv[:2] == ["ECHO", STOP_TOKEN] or argv[:2] == ["echo", STOP_TOKEN]:
                break
            self.rows.append((float(ts), source, argv))
        self.client.close()


def script_names() -> dict[str, str]:
    """sha1 -> name of tdauto's Lua scripts (as ``register_script`` computes it)."""
    names = {}
    for entry in resources.files("tdauto.store").iterdir():
        if entry.name.endswith(".lua"):
            sha = hashlib.sha1(entry.read_text(encoding="utf-8").encode()).hexdigest()
            names[sha] = entry.name.removesuffix(".lua")
    return names


def ports_of(pid: int) -> set[int]:
    with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
        return {c.laddr.port for c in psutil.Process(pid).net_connections(kind="tcp") if c.laddr}
    return set()


def roles(worker_pid: int) -> dict[int, str]:
    """Local TCP port -> which process holds that Redis connection."""
    out = {port: "app" for port in ports_of(os.getpid())}
    out.update({port: "worker" for port in ports_of(worker_pid)})
    with contextlib.suppress(psutil.NoSuchProcess):
        children = psutil.Process(worker_pid).children(recursive=True)
        for i, child in enumerate(sorted(children, key=lambda p: p.pid)):
            out.update({port: f"child{i + 1}" for port in ports_of(child.pid)})
    return out


def short(argv: list[str], prefix: str, scripts: dict[str, str], ids: dict[str, str]) -> str:
    """A command as ``NAME(key)``, keys without the prefix and with ids as <ex>, <task>."""
    name = argv[0].upper()
    if name in ("EVALSHA", "EVAL") and len(argv) > 1:
        return f"EVALSHA({scripts.get(argv[1], argv[1][:8])})"
    if name in ("MULTI", "EXEC", "PING") or len(argv) < 2:
        return name
    key = argv[1]
    if name == "PUBLISH":
        return f"PUBLISH({key})"
    key = key.replace("\\x06\\x16", "+pri")  # kombu's priority list of a queue
    key = key.removeprefix(prefix + ":")
    for value, label in ids.items():
        key = key.replace(value, label)
    key = _HEX_ID.sub("<id>", key)
    return f"{name}({key})"


def trace_one(
    system: AutomationSystems,
    r: redis.Redis,
    task_id: str,
    worker_pid: int,
    done: Callable[[], int],
) -> dict[str, Any]:
    """Run one execution alone under MONITOR; its commands per process, in order."""
    time.sleep(1.0)  # let the previous run's last acks and events drain
    info: Any = r.client_info()
    own = str(info["addr"])
    monitor = Monitor(system.settings.broker_url or "")
    monitor.start()
    monitor.ready.wait(10)
    base = done()
    execution = system.trigger_sync(task_id)
    finished, _polls, _ = wait_count(done, base + 1, 60)
    time.sleep(0.5)  # the last ack and task events come just after SUCCEEDED
    roles_by_port = roles(worker_pid)
    r.echo(STOP_TOKEN)
    monitor.join(10)
    summary = summarize_trace(
        monitor.rows,
        own,
        roles_by_port,
        system.settings.key_prefix,
        {execution.id: "<ex>", task_id: "<task>"},
    )
    return {"execution_id": execution.id, "finished": finished is not None, **summary}


def summarize_trace(
    rows: list[tuple[float, str, list[str]]],
    own: str,
    where: dict[int, str],
    prefix: str,
    ids: dict[str, str],
) -> dict[str, Any]:
    """Commands per process in order (a script's commands in ``[...]`` after its EVALSHA),
    counts per process, round trips (a MULTI..EXEC block is one), and store vs broker
    (store: tdauto's keys and scripts; a MULTI..EXEC block counts as what it holds)."""
    scripts = script_names()
    lines: dict[str, list[str]] = {}
    counts: Counter[str] = Counter()
    trips: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    kind_trips: Counter[str] = Counter()
    block_kind: dict[str, str] = {}
    block: dict[str, int] = {}  # source -> commands so far in its open MULTI block
    last_script: tuple[str, int] | None = None
    for _ts, source, argv in rows:
        if source == own:
            continue
        text = short(argv, prefix, scripts, ids)
        if source == "lua":  # Redis shows a script's commands right after its EVALSHA
            counts["lua"] += 1
            kinds["store (in Lua)"] += 1
            if last_script is None:
                lines.setdefault("lua", []).append(text)
            else:
                who, at = last_script
                inner = lines[who][at]
                lines[who][at] = (
                    f"{inner[:-1]} {text}]" if inner.endswith("]") else f"{inner}[{text}]"
                )
            continue
        port = int(source.rsplit(":", 1)[1]) if ":" in source else -1
        role = where.get(port, "other")
        seq = lines.setdefault(role, [])
        seq.append(text)
        counts[role] += 1
        name = argv[0].upper()
        last_script = (role, len(seq) - 1) if name in ("EVALSHA", "EVAL") else None
        if name in ("EVALSHA", "EVAL"):
            kind = "store" if len(argv) > 1 and argv[1] in scripts else "broker"
        else:
            kind = "store" if len(argv) > 1 and argv[1].startswith(prefix + ":") else "broker"
        if name == "MULTI":
            block[source] = 1
            trips[role] += 1
        elif source in block:
            block[source] += 1
            if name == "EXEC":
                held = block_kind.pop(source, "broker")
                kinds[held] += block.pop(source)
                kind_trips[held] += 1
            else:
                block_kind.setdefault(source, kind)
        else:
            trips[role] += 1
            kinds[kind] += 1
            kind_trips[kind] += 1
    return {
        "commands": dict(counts),
        "round_trips": dict(trips),
        "by_kind": dict(kinds),
        "round_trips_by_kind": dict(kind_trips),
        "lines": lines,
    }


# --- report --------------------------------------------------------------------------------


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def build_report(
    args: argparse.Namespace,
    base: dict[str, Any],
    tda: dict[str, Any],
    version: str,
    load_before: tuple[float, float, float],
) -> dict[str, Any]:
    n, c = args.n, args.chain
    t_calls, b_calls = tda["run"]["redis"]["calls"], base["run"]["redis"]["calls"]
    added = {k: t_calls.get(k, 0) - b_calls.get(k, 0) for k in {*t_calls, *b_calls}}
    added_total = tda["run"]["redis"]["total"] - base["run"]["redis"]["total"]
    chain_added = tda["chain"]["redis"]["total"] - base["chain"]["redis"]["total"]
    per_action_long = chain_added / c
    return {
        "benchmark": "throughput",
        "n": n,
        "chain": c,
        "warmup": args.warmup,
        "concurrency": args.concurrency,
        "write_behind": args.write_behind,
        "trigger": args.trigger if args.trigger == "sync" else f"async, batches of {args.batch}",
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "redis": version,
        "load_avg_before": load_before,
        "load_avg_after": os.getloadavg(),
        "baseline": base,
        "tdauto": tda,
        "ratio": {
            "executions_per_s": ratio(tda["run"]["per_s"], base["run"]["per_s"]),
            "chain_actions_per_s": ratio(tda["chain"]["per_s"], base["chain"]["per_s"]),
        },
        "commands": {
            "tdauto_per_execution": tda["run"]["redis"]["total"] / n,
            "baseline_per_task": base["run"]["redis"]["total"] / n,
            "added_per_execution": added_total / n,
            "added_per_action": added_total / n,  # one action per execution
            "added_by_command": dict(sorted(added.items(), key=lambda kv: -kv[1])),
            "chain_added_per_action": per_action_long,
            "fixed_per_execution": added_total / n - per_action_long,
            "tdauto_in_bytes_per_execution": tda["run"]["redis"]["in_bytes"] / n,
            "baseline_in_bytes_per_task": base["run"]["redis"]["in_bytes"] / n,
            "tdauto_chain_in_bytes_per_action": tda["chain"]["redis"]["in_bytes"] / c,
            "baseline_chain_in_bytes_per_task": base["chain"]["redis"]["in_bytes"] / c,
        },
    }


def print_report(report: dict[str, Any], top: int) -> None:
    b, t, cmd = report["baseline"], report["tdauto"], report["commands"]
    n, c = report["n"], report["chain"]
    print(
        f"throughput: {n:,} executions of 1 noop action, then 1 execution of {c:,}; "
        f"cpu pool prefork -c {report['concurrency']}"
        f"{' (tdauto writing successes behind)' if report['write_behind'] else ''}; "
        f"redis {report['redis']}; "
        f"{report['cpus']} CPUs; ratio = tdauto / baseline (bare Celery)"
    )
    before, after = report["load_avg_before"], report["load_avg_after"]
    print(
        f"load average (1 min) before {before[0]:.2f}, after {after[0]:.2f}: the numbers are "
        "only as quiet as the machine"
    )
    how = "trigger_sync" if t["trigger"] == "sync" else "trigger"
    print(
        f"tdauto triggered with AutomationSystems.{how} ({report['trigger']}); baseline sent "
        f"with app.send_task in a loop, and a chain of {c:,} immutable signatures"
    )

    def row(label: str, phase: str, key: str) -> tuple[str, Any, Any, Any]:
        tv, bv = t[phase][key], b[phase][key]
        return label, tv, bv, ratio(tv, bv)

    rows = [
        row("executions/s", "run", "per_s"),
        row("  steady executions/s (10%-90% done)", "run", "middle_per_s"),
        row("  wall s (first send to last done)", "run", "wall_s"),
        row("  send loop s", "run", "send_s"),
        row(f"{c:,}-action run: actions/s", "chain", "per_s"),
        row("  wall s", "chain", "wall_s"),
    ]
    head = ("", "tdauto", "baseline", "ratio")
    print(f"{head[0]:<38}{head[1]:>12}{head[2]:>12}{head[3]:>10}")
    for label, tv, bv, rv in rows:
        print(f"{label:<38}{fmt(tv):>12}{fmt(bv):>12}{fmt(rv, 3):>10}")
    rounds = report["rounds"]
    if len(rounds) > 1:
        ratios = ", ".join(f"{r['ratio']:.3f}" for r in rounds)
        print(
            f"executions/s ratio in each of {len(rounds)} rounds (baseline, then tdauto, "
            f"alternating; the rows above are round 1): {ratios}; "
            f"median {report['ratio']['executions_per_s_median']:.3f}"
        )
    for side, data in (("tdauto", t), ("baseline", b)):
        for phase in ("run", "chain"):
            if not data[phase]["finished"]:
                print(
                    f"  !! {side} {phase} did not finish: {data[phase]['completed']:,} of "
                    f"{data[phase]['count']:,} done (rate shown is the partial rate)"
                )
    cpu_t, cpu_b = t["run"].get("cpu_s", {}), b["run"].get("cpu_s", {})
    if cpu_t and cpu_b:
        print(f"CPU ms per execution / task (user + system) during the {n:,} runs:")
        for key, label in CPU_ROLES.items():
            tv, bv = cpu_t[key] * 1000 / n, cpu_b[key] * 1000 / n
            print(f"  {label:<36}{tv:>12.3f}{bv:>12.3f}{fmt(ratio(tv, bv), 3):>10}")
        tv, bv = sum(cpu_t.values()) * 1000 / n, sum(cpu_b.values()) * 1000 / n
        print(f"  {'total':<36}{tv:>12.3f}{bv:>12.3f}{fmt(ratio(tv, bv), 3):>10}")
    print()
    print(
        "Redis commands (INFO commandstats; commands run by Lua scripts included; the "
        "benchmark's polls and the baseline's INCR removed)"
    )
    tr, br = t["run"]["redis"], b["run"]["redis"]
    print(f"{'':<22}{'tdauto/exec':>14}{'baseline/task':>15}{'added/exec':>12}")
    print(f"{'total':<22}{tr['total'] / n:>14.2f}{br['total'] / n:>15.2f}"
          f"{cmd['added_per_execution']:>12.2f}")  # fmt: skip
    names = sorted(tr["calls"], key=lambda k: -tr["calls"][k])[:top]
    for name in names:
        tv, bv = tr["calls"].get(name, 0), br["calls"].get(name, 0)
        print(f"  {name:<20}{tv / n:>14.2f}{bv / n:>15.2f}{(tv - bv) / n:>12.2f}")
    print(
        f"bytes sent to Redis per execution: tdauto {cmd['tdauto_in_bytes_per_execution']:,.0f}, "
        f"baseline {cmd['baseline_in_bytes_per_task']:,.0f}"
    )
    print(
        f"added by tdauto: {cmd['added_per_action']:.1f} commands per action = per execution "
        f"(1 action each); in the {c:,}-action run {cmd['chain_added_per_action']:.1f} per "
        f"action, so about {cmd['fixed_per_execution']:.1f} per execution + "
        f"{cmd['chain_added_per_action']:.1f} per action"
    )
    print(
        f"{c:,}-action run: {cmd['tdauto_chain_in_bytes_per_action']:,.0f} bytes sent to Redis "
        f"per action (baseline chain {cmd['baseline_chain_in_bytes_per_task']:,.0f}); the "
        f"execution record is {t['chain'].get('execution_json_bytes', 0):,} bytes of JSON"
    )
    statuses = t.get("statuses", {})
    print(f"tdauto execution statuses at the end: {statuses}")
    trace = t.get("trace")
    if trace:
        print()
        total = sum(v for k, v in trace["commands"].items() if k != "lua")
        print(
            f"one execution alone under MONITOR: {total} client commands + "
            f"{trace['commands'].get('lua', 0)} run by Lua, "
            f"{sum(trace['round_trips'].values())} round trips "
            "(a MULTI..EXEC block counts once)"
        )
        kinds, kt = trace["by_kind"], trace["round_trips_by_kind"]
        print(
            f"  store (tdauto's keys): {kinds.get('store', 0)} commands in "
            f"{kt.get('store', 0)} round trips + {kinds.get('store (in Lua)', 0)} run by its "
            f"Lua scripts; broker (Celery/kombu): {kinds.get('broker', 0)} commands in "
            f"{kt.get('broker', 0)} round trips"
        )
        print(
            "  app = this process (trigger_sync), worker = the Celery main process (fetch, ack, "
            "events), childN = a prefork child (task bodies):"
        )
        for role, seq in sorted(trace["lines"].items()):
            label = (
                f"{role} ({trace['commands'].get(role, 0)} cmds, "
                f"{trace['round_trips'].get(role, 0)} trips): "
            )
            print(textwrap.fill(" ".join(seq), width=100, initial_indent=label,
                                subsequent_indent="    "))  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000, help="Executions / tasks per system.")
    parser.add_argument("--chain", type=int, default=1000, help="Actions in the long run.")
    parser.add_argument("--warmup", type=int, default=50, help="Untimed runs first.")
    parser.add_argument(
        "--rounds", type=int, default=3, help="Rounds of --n runs (the chain is in round 1)."
    )
    parser.add_argument("--concurrency", type=int, default=Settings().concurrency_cpu)
    parser.add_argument(
        "--write-behind",
        action="store_true",
        help="tdauto's worker with TDAUTO_WRITE_BEHIND=true (successes written behind the ack).",
    )
    parser.add_argument("--trigger", choices=("sync", "async"), default="sync")
    parser.add_argument("--batch", type=int, default=16, help="async: triggers per gather.")
    parser.add_argument("--loglevel", default="INFO", help="Both workers' log level.")
    parser.add_argument("--timeout", type=float, default=600.0, help="Limit of each run, s.")
    parser.add_argument("--chain-timeout", type=float, default=300.0)
    parser.add_argument("--top", type=int, default=15, help="Commands shown in the table.")
    parser.add_argument("--no-trace", dest="trace", action="store_false")
    parser.add_argument("--json", action="store_true", help="Print the report as JSON.")
    args = parser.parse_args()
    if min(args.n, args.chain, args.concurrency, args.batch, args.rounds) < 1 or args.warmup < 0:
        parser.error("--n, --chain, --concurrency, --batch and --rounds must be at least 1")
    for key in [k for k in os.environ if k.startswith("TDAUTO_")]:
        del os.environ[key]
    if shutil.which("redis-server") is None:
        parser.error("redis-server not found (apt-get install -y redis-server)")
    from tests.support.redis_server import RedisServer

    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="tdauto-bench-throughput-"))
    server = RedisServer(work / "redis")
    try:
        server.start()
        args.redis_pid = server.pid
        admin = redis.Redis.from_url(server.url)
        server_info: Any = admin.info("server")
        version = str(server_info["redis_version"])
        rounds: list[tuple[float, float, bool]] = []
        for number in range(args.rounds):  # alternating, so a drift of the machine hits both
            here = work / f"round-{number}"
            here.mkdir()
            print(f"round {number + 1}: baseline (bare Celery) ...", file=sys.stderr, flush=True)
            b = run_baseline(server.url, here, args, full=number == 0)
            admin.flushall()
            print(f"round {number + 1}: tdauto ...", file=sys.stderr, flush=True)
            t = run_tdauto(server.url, here, args, full=number == 0)
            admin.flushall()
            if number == 0:
                base, tda = b, t
            finished = t["run"]["finished"] and b["run"]["finished"]
            rounds.append((t["run"]["per_s"], b["run"]["per_s"], finished))
        admin.close()
    finally:
        Spawned.kill_all(exited_too=True)
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    report = build_report(args, base, tda, version, load_before)
    report["rounds"] = [
        {"tdauto_per_s": t, "baseline_per_s": b, "ratio": t / b, "finished": done}
        for t, b, done in rounds
    ]
    report["ratio"]["executions_per_s_median"] = statistics.median(t / b for t, b, _ in rounds)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print_report(report, args.top)
    ok = all(s[p]["finished"] for s in (base, tda) for p in ("run", "chain"))
    ok = ok and all(r["finished"] for r in report["rounds"])
    ok = ok and set(tda.get("statuses", {})) <= {"SUCCEEDED"}
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
