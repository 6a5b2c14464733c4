"""Load-aware routing against static round-robin: the makespan of a skewed workload over two
host groups, one of them slowed, and how long the resource manager takes to react.

One run, one ``redis-server`` the script starts (tests/support's ``RedisServer``), and:

* host group ``fast``: ``tdauto worker cpu`` with ``TDAUTO_HOST=fast`` and ``--fast`` slots
  (default 4);
* host group ``slow``: the same with ``TDAUTO_HOST=slow`` and ``--slow`` slots (default 1),
  the slowed host;
* ``tdauto beat`` running the resource manager every ``--interval`` seconds (default 1).

Workload: ``--n`` single-action executions (default 60) of the ``work`` action
(``benchmarks/balancing_plugin.py``, which holds its slot for a number of seconds), durations
drawn once, seeded, from a skewed mix: 80% short (``--short``, 0.2 s) and 20% long
(``--long``, 1.5 s); submitted in ``--waves`` waves (default 4) ``--gap`` seconds apart
(default 1), through the facade, which sends the action (manual triggers start in the
caller's process). The same durations, in the same order, in every mode:

* ``static``: the facade's sender alternates ``tdauto.cpu.fast`` / ``tdauto.cpu.slow`` for
  every action, which is what static Celery routing does (a queue per host, in turn);
* ``managed``: tdauto as shipped: the router picks host queues by the manager's weights
  (cached, a slot budget per tick) and falls back to the shared ``tdauto.cpu``, which both
  hosts read;
* ``shared`` (for reference, ``--no-shared`` skips it): every action to ``tdauto.cpu``, no
  weights, which is tdauto before the router. Pull from one shared queue already balances
  equal hosts that only differ in slots; what the weights add is steering by reservations
  and measured load (high-water), which this workload does not exercise.

Makespan is from the first trigger to the last ``finished_at`` of the mode's executions; the
modes alternate over ``--rounds`` (default 1), each starting from idle hosts. The ratio is
managed / static (the target: 0.70 or less, at least 30% shorter).

Reaction: with the system idle, ``--probes`` times (default 5) one 3 s action is sent straight
to ``tdauto.cpu.slow``; a thread reads the weights every 20 ms. Reaction is the time from the
action's ``started_at`` (the slowed host's one slot is taken: it is busy) to the
first weights record in which ``slow`` has weight 0, seen by the reader; recovery is from its
``finished_at`` to the first record with weight again. Both are reported in seconds and in
manager ticks. They include the sampler's latency (a sample goes out within about 0.5 s of a
change in running tasks) and the wait for the next tick.

```sh
.venv/bin/python benchmarks/balancing.py               # prints a table and the ratio
.venv/bin/python benchmarks/balancing.py --rounds 3 --json
```
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from _common import ROOT, Spawned, clean_env, start_redis, tail

sys.path.insert(0, str(ROOT))

from tdauto import AutomationSystems, ExecutionStatus
from tdauto.app import runtime_of
from tdauto.engine.tasks import sender

PLUGIN = "benchmarks.balancing_plugin"
HOSTS = ("fast", "slow")
S = ExecutionStatus


class Weights(threading.Thread):
    """Reads the weights record every 20 ms and keeps each new one with when it was seen."""

    def __init__(self, system: AutomationSystems) -> None:
        super().__init__(daemon=True)
        self.system = system
        self.seen: list[tuple[float, dict[str, Any]]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            record = self.system.store.weights()
            if record and (not self.seen or self.seen[-1][1]["tick"] != record["tick"]):
                self.seen.append((time.time(), record))
            self.halt.wait(0.02)

    @staticmethod
    def slow(record: dict[str, Any]) -> dict[str, Any]:
        return dict(record["classes"]["cpu"].get("slow", {"weight": 0.0, "slots": 0}))

    def first_after(self, ts: float, predicate: Any, timeout_s: float = 30) -> tuple[float, int]:
        """(seen at, ticks after ``ts``) of the first record written after ``ts`` matching."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            later = [(seen, r) for seen, r in self.seen if r["at"] > ts]
            for n, (seen, record) in enumerate(later, 1):
                if predicate(record):
                    return seen, n
            time.sleep(0.05)
        raise RuntimeError("the manager never reacted; is the beat running?")


def start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return Spawned.popen(
            [sys.executable, "-m", "tdauto.cli", *argv],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def wait(predicate: Any, timeout_s: float, what: str, logs: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            text = "\n".join(f"--- {p.name}\n{tail(p)}" for p in logs.glob("*.log"))
            raise RuntimeError(f"timed out waiting for {what}\n{text}")
        time.sleep(0.1)


def idle(weights: Weights, args: argparse.Namespace) -> bool:
    """Both hosts idle at the last tick: every slot free, nothing queued."""
    if not weights.seen:
        return False
    record = weights.seen[-1][1]["classes"]["cpu"]
    want = {"fast": args.fast, "slow": args.slow}
    return all(record.get(h, {}).get("slots") == want[h] for h in HOSTS)


def run_mode(
    system: AutomationSystems, task_id: str, durations: list[float], args: argparse.Namespace
) -> dict[str, Any]:
    t0 = time.time()
    runs = []
    per_wave = -(-len(durations) // args.waves)
    for wave in range(args.waves):
        if wave:
            time.sleep(args.gap)
        for d in durations[wave * per_wave : (wave + 1) * per_wave]:
            runs.append(system.trigger_sync(task_id, params={"work": {"seconds": d}}))
    done = [system.wait_sync(r.id, timeout=args.timeout) for r in runs]
    bad = [d.error for d in done if d.status is not S.SUCCEEDED]
    if bad:
        raise RuntimeError(f"{len(bad)} runs failed: {bad[:3]}")
    ends = [d.actions[0].finished_at for d in done]
    end = max(e.timestamp() for e in ends if e is not None)
    hosts = Counter(d.actions[0].host for d in done)
    queues = Counter(
        "host queue" if (d.actions[0].queue or "").count(".") == 2 else "shared" for d in done
    )
    return {"makespan_s": round(end - t0, 3), "by_host": dict(hosts), "by_queue": dict(queues)}


def probe(
    system: AutomationSystems, task_id: str, weights: Weights, args: argparse.Namespace
) -> dict[str, float]:
    run = system.trigger_sync(task_id, params={"work": {"seconds": 3.0}})
    deadline = time.monotonic() + 60
    while True:
        e = system.get_execution_sync(run.id)
        if e.actions[0].started_at is not None:
            break
        if time.monotonic() > deadline:
            raise RuntimeError("the probe never started")
        time.sleep(0.02)
    assert e.actions[0].host == "slow", e.actions[0].host
    started = e.actions[0].started_at.timestamp()
    busy_seen, busy_ticks = weights.first_after(started, lambda r: Weights.slow(r)["weight"] == 0)
    done = system.wait_sync(run.id, timeout=60)
    finished = done.actions[0].finished_at
    assert finished is not None
    ended = finished.timestamp()
    back_seen, back_ticks = weights.first_after(ended, lambda r: Weights.slow(r)["weight"] > 0)
    return {
        "react_s": round(busy_seen - started, 3),
        "react_ticks": busy_ticks,
        "recover_s": round(back_seen - ended, 3),
        "recover_ticks": back_ticks,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=60, help="Executions per mode and round.")
    parser.add_argument("--fast", type=int, default=4, help="Slots of the fast host.")
    parser.add_argument("--slow", type=int, default=1, help="Slots of the slowed host.")
    parser.add_argument("--short", type=float, default=0.2, help="Short action, s.")
    parser.add_argument("--long", type=float, default=1.5, help="Long action, s.")
    parser.add_argument("--long-share", type=float, default=0.2, help="Share of long actions.")
    parser.add_argument("--waves", type=int, default=4)
    parser.add_argument("--gap", type=float, default=1.0, help="Seconds between waves.")
    parser.add_argument("--interval", type=float, default=1.0, help="Manager interval, s.")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--probes", type=int, default=5)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--no-shared", dest="shared", action="store_false")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    durations = [args.long if rng.random() < args.long_share else args.short for _ in range(args.n)]
    work = Path(tempfile.mkdtemp(prefix="tdauto-balancing-"))
    logs = work / "logs"
    logs.mkdir()
    server = start_redis(work / "redis")
    report: dict[str, Any] = {"args": vars(args), "rounds": []}
    try:
        data = work / "data"
        common = {
            "TDAUTO_BROKER_URL": server.url,
            "TDAUTO_DATA_DIR": str(data),
            "TDAUTO_PLUGINS": PLUGIN,
            "TDAUTO_MANAGER_INTERVAL_S": str(args.interval),
            "PYTHONPATH": str(ROOT),
        }
        for host, slots in (("fast", args.fast), ("slow", args.slow)):
            env = clean_env(**common, TDAUTO_HOST=host, TDAUTO_CONCURRENCY_CPU=str(slots))
            start(["worker", "cpu", "--loglevel", "WARNING"], env, logs / f"{host}.log")
        start(["beat", "--loglevel", "WARNING"], clean_env(**common), logs / "beat.log")
        system = AutomationSystems(
            broker_url=server.url,
            data_dir=data,
            plugins=[PLUGIN],
            host="client",
            manager_interval_s=args.interval,
        )
        weights = Weights(system)
        weights.start()
        wait(lambda: idle(weights, args), 120, "both hosts in the weights", logs)
        task = asyncio.run(
            system.create_task(
                name="work",
                type="optimization",
                schedule="daily",
                schedule_config={"hour": 2},
                actions=[{"type": "work", "params": {"seconds": 0.2}}],
                overlap="allow",
            )
        )
        rt = runtime_of(system.app)
        managed_send = rt.send
        plain = sender(system.app)
        turn = itertools.cycle([f"tdauto.cpu.{h}" for h in HOSTS])

        def round_robin(name: str, argv: list[Any], queue: str, priority: int = 5) -> None:
            plain(name, argv, next(turn) if name.startswith("tdauto.action.") else queue, priority)

        def shared(name: str, argv: list[Any], queue: str, priority: int = 5) -> None:
            plain(name, argv, queue, priority)

        senders = {"static": round_robin, "managed": managed_send, "shared": shared}
        modes = ["static", "managed", *(["shared"] if args.shared else [])]
        for n in range(args.rounds):
            result: dict[str, Any] = {}
            for mode in modes if n % 2 == 0 else modes[::-1]:
                wait(lambda: idle(weights, args), 120, "idle hosts", logs)
                rt.send = senders[mode]
                result[mode] = run_mode(system, task.id, durations, args)
            result["ratio"] = round(
                result["managed"]["makespan_s"] / result["static"]["makespan_s"], 3
            )
            report["rounds"].append(result)

        def to_slow(name: str, argv: list[Any], queue: str, priority: int = 5) -> None:
            plain(name, argv, "tdauto.cpu.slow", priority)

        rt.send = to_slow
        probes = []
        for _ in range(args.probes):
            wait(lambda: idle(weights, args), 120, "idle hosts", logs)
            time.sleep(random.uniform(0, args.interval))  # any phase of the tick
            probes.append(probe(system, task.id, weights, args))
        report["probes"] = probes
        weights.halt.set()
    finally:
        for proc in Spawned.procs:  # workers and beat, each in its own session
            Spawned.stop(proc, 10)
        server.stop()

    ratios = [r["ratio"] for r in report["rounds"]]
    static = [r["static"]["makespan_s"] for r in report["rounds"]]
    managed = [r["managed"]["makespan_s"] for r in report["rounds"]]
    report["summary"] = {
        "static_makespan_s": statistics.median(static),
        "managed_makespan_s": statistics.median(managed),
        "shared_makespan_s": (
            statistics.median(r["shared"]["makespan_s"] for r in report["rounds"])
            if args.shared
            else None
        ),
        "ratio_managed_over_static": statistics.median(ratios),
        "react_s_median": statistics.median(p["react_s"] for p in probes),
        "react_s_max": max(p["react_s"] for p in probes),
        "react_ticks_max": max(p["react_ticks"] for p in probes),
        "recover_s_median": statistics.median(p["recover_s"] for p in probes),
        "recover_s_max": max(p["recover_s"] for p in probes),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    total = sum(durations)
    print(
        f"workload: {args.n} actions, {sum(d == args.long for d in durations)} long "
        f"({args.long}s) + short ({args.short}s), {total:.1f} slot-seconds, {args.waves} waves "
        f"{args.gap}s apart; hosts fast={args.fast} slots, slow={args.slow}; "
        f"manager every {args.interval}s"
    )
    print(f"ideal makespan (work / all slots): {total / (args.fast + args.slow):.2f}s")
    for n, r in enumerate(report["rounds"], 1):
        for mode in modes:
            m = r[mode]
            print(
                f"round {n} {mode:8s} makespan {m['makespan_s']:6.2f}s  hosts {m['by_host']}  "
                f"queues {m['by_queue']}"
            )
    s = report["summary"]
    print(
        f"ratio managed/static makespan: {s['ratio_managed_over_static']:.3f} "
        f"({(1 - s['ratio_managed_over_static']) * 100:.0f}% shorter)"
    )
    print(
        f"reaction (slow host busy -> weight 0): median {s['react_s_median']:.2f}s, "
        f"max {s['react_s_max']:.2f}s (<= {s['react_ticks_max']} ticks); recovery "
        f"(idle -> weight back): median {s['recover_s_median']:.2f}s, max {s['recover_s_max']:.2f}s"
    )
    for p in probes:
        print(f"  probe: {p}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
