"""Which embedded broker for local mode: bare Celery tasks/s on each candidate transport.

Candidates, each with tdauto's Celery settings (``tdauto.app.celery_config`` for a data dir
of the run's own, minus the ``tdauto_*`` keys: JSON only, ``task_acks_late``, prefetch 1,
events on) and the broker swapped:

* ``filesystem``: kombu's ``filesystem://`` as local mode used it before (polled every
  ``TDAUTO_POLL_INTERVAL_S``, 0.2 s; not atomic);
* ``atomic-fs``: the atomic filesystem channel (``benchmarks/atomic_fs.py``: temp name,
  fsync, rename into place, claim by rename), woken like the SQLite one;
* ``sqlite``: ``tdauto.localbroker`` (SQLite in WAL mode, socket wake-ups), what local mode
  uses now.

And ``tdauto``: tdauto itself in local mode (one ``tdauto worker cpu``, ``TDAUTO_PLUGINS=
benchmarks.noop_plugin``): ``--runs`` one-action ``noop`` runs triggered with ``trigger_sync``
in a loop, timed until the last has SUCCEEDED (``wait_sync`` on each, in order).

For each bare candidate, one worker as tdauto's cpu pool runs it (``celery worker -P prefork -c 2 -Q
tdauto.cpu,tdauto.control -E --without-gossip --without-mingle``), ready when it answers
``app.control.ping``. Two flows, timed: ``chain``: one task that sends the next one, ``--chain``
hops (the shape of a run's actions: latency per hop); ``burst``: ``--n`` tasks sent in a loop
from this process, timed until the worker has run them all (each appends a byte to a file).

    .venv/bin/python benchmarks/local_broker.py [--n 2000] [--chain 300] [--only sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import ROOT, Spawned, clean_env, filesystem_conf, tail
from celery import Celery

from tdauto import AutomationSystems
from tdauto.app import SETTINGS_KEY, celery_config
from tdauto.settings import Settings

BIN = Path(sys.executable).parent

MODULE = """
import json, os
from celery import Celery

app = Celery("bench_local")
app.conf.update(json.loads({conf!r}))
COUNT, DONE = {count!r}, {done!r}


@app.task(name="bench.hop")
def hop(n):
    if n > 1:
        hop.apply_async((n - 1,), queue="tdauto.cpu")
    else:
        open(DONE, "w").close()


@app.task(name="bench.tick")
def tick():
    fd = os.open(COUNT, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, b"x")
    os.close(fd)
"""


def conf_for(kind: str, data: Path) -> dict[str, Any]:
    if kind == "filesystem":
        return filesystem_conf(data)
    conf = celery_config(Settings(data_dir=data))
    del conf[SETTINGS_KEY]
    root = data / "broker"
    if kind == "atomic-fs":
        conf["broker_transport"] = "atomic_fs:Transport"
        conf["broker_transport_options"] = {
            "folder": str(root),
            "data_folder_in": str(root / "queue"),
            "data_folder_out": str(root / "queue"),
            "control_folder": str(root / "control"),
            "polling_interval": 1.0,
        }
    return conf


def wait_for(check: Any, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}\n{tail(log)}")
        time.sleep(0.001)


def run(kind: str, args: argparse.Namespace, work: Path) -> dict[str, float]:
    data = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=work))
    conf = conf_for(kind, data)
    count, done = data / "count", data / "done"
    (data / "bench_local.py").write_text(
        MODULE.format(conf=json.dumps(conf), count=str(count), done=str(done))
    )
    sys.path[:0] = [str(data)]
    env = clean_env(PYTHONPATH=os.pathsep.join([str(data), str(ROOT / "benchmarks"), str(ROOT)]))
    log = data / "worker.log"
    argv = [
        str(BIN / "celery"),
        "-A",
        "bench_local",
        "worker",
        "-P",
        "prefork",
        "-c",
        "2",
        "-Q",
        "tdauto.cpu,tdauto.control",
        "-n",
        f"bench-{kind}@localhost",
        "-l",
        "WARNING",
        "-E",
        "--without-gossip",
        "--without-mingle",
    ]
    with log.open("w") as out:
        proc = Spawned.popen(argv, env=env, cwd=data, stdout=out, stderr=out)
    app = Celery("bench_local", set_as_current=False)
    app.conf.update(conf)
    try:
        wait_for(lambda: bool(app.control.ping(timeout=0.5)), 60, "the worker", log)
        app.send_task("bench.hop", args=[5], queue="tdauto.cpu")  # warm-up
        wait_for(done.exists, 60, "the warm-up", log)
        done.unlink()

        start = time.perf_counter()
        app.send_task("bench.hop", args=[args.chain], queue="tdauto.cpu")
        wait_for(done.exists, args.timeout, "the chain", log)
        chain_s = time.perf_counter() - start

        start = time.perf_counter()
        with app.producer_or_acquire() as producer:
            for _ in range(args.n):
                app.send_task("bench.tick", queue="tdauto.cpu", producer=producer)
        sent_s = time.perf_counter() - start
        wait_for(
            lambda: count.exists() and count.stat().st_size >= args.n,
            args.timeout,
            "the burst",
            log,
        )
        burst_s = time.perf_counter() - start
    finally:
        app.close()
        Spawned.stop(proc)
        sys.path.remove(str(data))
    return {
        "chain_tasks_per_s": args.chain / chain_s,
        "burst_tasks_per_s": args.n / burst_s,
        "burst_send_per_s": args.n / sent_s,
    }


def run_tdauto(args: argparse.Namespace, work: Path) -> dict[str, float]:
    data = Path(tempfile.mkdtemp(prefix="tdauto-", dir=work))
    plugin = "benchmarks.noop_plugin"
    sys.path[:0] = [str(ROOT)]
    system = AutomationSystems(data_dir=data, plugins=[plugin], host="bench")
    env = clean_env(
        TDAUTO_DATA_DIR=str(data), TDAUTO_PLUGINS=plugin, TDAUTO_HOST="bench", PYTHONPATH=str(ROOT)
    )
    log = data / "worker.log"
    with log.open("w") as out:
        proc = Spawned.popen(
            [sys.executable, "-m", "tdauto.cli", "worker", "cpu"],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=out,
        )
    try:
        wait_for(lambda: bool(system.app.control.ping(timeout=0.5)), 60, "the worker", log)
        task = asyncio.run(
            system.create_task(
                name="bench-noop",
                type="maintenance",
                schedule="interval",
                schedule_config={"every": "1d"},
                actions=[{"type": "noop"}],
                overlap="allow",
            )
        )
        for ex in [system.trigger_sync(task.id) for _ in range(5)]:  # warm-up
            system.wait_sync(ex.id, timeout=60)
        start = time.perf_counter()
        runs = [system.trigger_sync(task.id) for _ in range(args.runs)]
        triggered_s = time.perf_counter() - start
        for ex in runs:
            assert system.wait_sync(ex.id, timeout=args.timeout).status.value == "SUCCEEDED"
        elapsed = time.perf_counter() - start
    finally:
        system.app.close()
        Spawned.stop(proc)
    return {"runs_per_s": args.runs / elapsed, "triggers_per_s": args.runs / triggered_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="Tasks of the burst.")
    parser.add_argument("--chain", type=int, default=300, help="Hops of the chain.")
    parser.add_argument("--runs", type=int, default=300, help="tdauto runs (local mode).")
    parser.add_argument(
        "--only", action="append", choices=("filesystem", "atomic-fs", "sqlite", "tdauto")
    )
    parser.add_argument(
        "--filesystem-scale",
        type=float,
        default=0.05,
        help="kombu's filesystem transport gets this share of --n and --chain "
        "(it polls; the full counts take minutes).",
    )
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    kinds = args.only or ["filesystem", "atomic-fs", "sqlite", "tdauto"]
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="tdauto-local-broker-") as work:
        try:
            for kind in kinds:
                scaled = argparse.Namespace(**vars(args))
                if kind == "filesystem":
                    scaled.n = max(20, int(args.n * args.filesystem_scale))
                    scaled.chain = max(10, int(args.chain * args.filesystem_scale))
                results[kind] = (
                    run_tdauto(args, Path(work))
                    if kind == "tdauto"
                    else run(kind, scaled, Path(work))
                )
                print(
                    kind, json.dumps({k: round(v, 1) for k, v in results[kind].items()}), flush=True
                )
        finally:
            Spawned.kill_all(exited_too=True)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"{'transport':<12} {'chain tasks/s':>14} {'burst tasks/s':>14} {'sends/s':>10}")
        for kind, r in results.items():
            if kind == "tdauto":
                print(
                    f"tdauto local mode: {r['runs_per_s']:.1f} runs/s"
                    f" (triggers {r['triggers_per_s']:.1f}/s)"
                )
                continue
            print(
                f"{kind:<12} {r['chain_tasks_per_s']:>14.1f} {r['burst_tasks_per_s']:>14.1f}"
                f" {r['burst_send_per_s']:>10.1f}"
            )


if __name__ == "__main__":
    main()
