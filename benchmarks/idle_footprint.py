"""Idle footprint: time to ready and memory of an idle system, tdauto against bare Celery.

For each mode (local: the local broker; redis: a redis-server this script starts on a free
port) and each run, it measures:

* tdauto: ``tdauto up`` in a fresh data dir, started in its own session. Ready time is from
  the spawn to the ``ready in`` line on its stdout. After ``--idle`` seconds, the RSS (and
  USS, where permitted) of the whole process tree is summed. It is then stopped with SIGINT,
  which must end it within 30 s and leave none of its processes behind.
* baseline: bare Celery with the same shape and settings (tdauto's own ``celery_config`` for
  a data dir of its own, so JSON only, late acks, the same broker options): three
  ``celery -A mod worker`` processes with the pools, concurrencies and queues of
  ``workers/*.py`` plus one ``celery beat`` process. Ready time is from the first spawn until
  all three workers answer ``app.control.ping``; the memory is the sum over the four
  processes and their children. They are stopped with SIGTERM (warm shutdown), with the same
  30 s limit and leftover check.

It prints the medians and the tdauto/baseline ratios (``--json`` for a machine-readable
report) and exits 1 if any stop was late or left processes behind. Not a timed test.

    .venv/bin/python benchmarks/idle_footprint.py [--runs 3] [--idle 10] [--modes local,redis]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil
from _common import (
    Spawned,
    baseline_argvs,
    baseline_conf,
    clean_env,
    flush,
    median,
    ratio,
    start_baseline,
    start_redis,
    start_up,
)
from celery import Celery

MiB = 1024 * 1024
STOP_LIMIT_S = 30.0


# --- processes ---------------------------------------------------------------------------


def tree(pids: list[int]) -> list[psutil.Process]:
    """The processes ``pids`` and all their descendants."""
    out: dict[int, psutil.Process] = {}
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            root = psutil.Process(pid)
            for proc in [root, *root.children(recursive=True)]:
                out[proc.pid] = proc
    return list(out.values())


def footprint(procs: list[psutil.Process]) -> dict[str, Any]:
    """Summed RSS and USS (None if any process's USS is not readable) of ``procs``."""
    rss = 0
    uss: int | None = 0
    count = 0
    for proc in procs:
        try:
            rss += proc.memory_info().rss
            count += 1
        except psutil.NoSuchProcess:
            continue
        try:
            if uss is not None:
                uss += proc.memory_full_info().uss
        except (psutil.AccessDenied, psutil.NoSuchProcess):
            uss = None
    return {"rss_mib": rss / MiB, "uss_mib": None if uss is None else uss / MiB, "procs": count}


def leftovers(procs: list[psutil.Process]) -> list[str]:
    """Processes of a stopped tree still alive (killed here so that nothing is left)."""
    alive = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{proc.pid} {' '.join(proc.cmdline())[:80]}")
                proc.kill()
        except psutil.NoSuchProcess:
            continue
    return alive


# --- one run -----------------------------------------------------------------------------


@dataclass
class Run:
    system: str
    mode: str
    ready_s: float
    rss_mib: float
    uss_mib: float | None
    procs: int
    stop_s: float
    leftovers: list[str] = field(default_factory=list)
    stopped_in_time: bool = True
    reported_ready_s: float | None = None


def run_tdauto(mode: str, broker_url: str | None, work: Path, args: argparse.Namespace) -> Run:
    data = Path(tempfile.mkdtemp(prefix="tdauto-", dir=work))
    env = clean_env(TDAUTO_DATA_DIR=str(data))
    if broker_url:
        env["TDAUTO_BROKER_URL"] = broker_url
    try:
        proc, watcher, started = start_up(data, env, args.ready_timeout)
    except RuntimeError as exc:
        raise RuntimeError(f"({mode}) {exc}") from None
    ready_s = watcher.ready_at - started
    reported = float(watcher.ready_line.split()[2].rstrip("s:"))
    time.sleep(args.idle)
    procs = tree([proc.pid])
    mem = footprint(procs)

    stop_started = time.monotonic()
    os.kill(proc.pid, signal.SIGINT)
    in_time = True
    try:
        proc.wait(timeout=STOP_LIMIT_S)
    except subprocess.TimeoutExpired:
        in_time = False
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    stop_s = time.monotonic() - stop_started
    watcher.join(timeout=5)
    return Run(
        system="tdauto",
        mode=mode,
        ready_s=ready_s,
        reported_ready_s=reported,
        stop_s=stop_s,
        stopped_in_time=in_time,
        leftovers=leftovers(procs),
        **mem,
    )


def run_baseline(mode: str, broker_url: str | None, work: Path, args: argparse.Namespace) -> Run:
    data = Path(tempfile.mkdtemp(prefix="baseline-", dir=work))
    conf = baseline_conf(broker_url, data)
    names, argvs = baseline_argvs(data, broker_url, conf)
    env = clean_env(PYTHONPATH=str(data))
    client = Celery("baseline-client", set_as_current=False)
    client.conf.update(conf)
    try:
        procs, ready_s = start_baseline(data, names, argvs, env, client, args.ready_timeout)
    except RuntimeError as exc:
        raise RuntimeError(f"({mode}) {exc}") from None
    client.close()
    time.sleep(args.idle)
    members = tree([p.pid for p in procs])
    mem = footprint(members)

    stop_started = time.monotonic()
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    in_time = True
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, stop_started + STOP_LIMIT_S - time.monotonic()))
        except subprocess.TimeoutExpired:
            in_time = False
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    stop_s = time.monotonic() - stop_started
    return Run(
        system="baseline",
        mode=mode,
        ready_s=ready_s,
        stop_s=stop_s,
        stopped_in_time=in_time,
        leftovers=leftovers(members),
        **mem,
    )


# --- redis ---------------------------------------------------------------------------------


# --- report --------------------------------------------------------------------------------


def summarize(runs: list[Run]) -> dict[str, Any]:
    return {
        "ready_s": median([r.ready_s for r in runs]),
        "rss_mib": median([r.rss_mib for r in runs]),
        "uss_mib": median([r.uss_mib for r in runs]),
        "procs": median([r.procs for r in runs]),
        "stop_s": median([r.stop_s for r in runs]),
    }


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_table(report: dict[str, Any]) -> None:
    head = [
        "mode",
        "tdauto ready s",
        "baseline ready s",
        "ratio",
        "tdauto RSS MiB",
        "baseline RSS MiB",
        "ratio",
        "tdauto USS MiB",
        "baseline USS MiB",
        "ratio",
        "procs t/b",
    ]
    rows = []
    for mode, m in report["modes"].items():
        t, b, r = m["tdauto"]["median"], m["baseline"]["median"], m["ratio"]
        rows.append(
            [
                mode,
                fmt(t["ready_s"]),
                fmt(b["ready_s"]),
                fmt(r["ready_s"]),
                fmt(t["rss_mib"], 1),
                fmt(b["rss_mib"], 1),
                fmt(r["rss_mib"]),
                fmt(t["uss_mib"], 1),
                fmt(b["uss_mib"], 1),
                fmt(r["uss_mib"]),
                f"{t['procs']:g}/{b['procs']:g}",
            ]
        )
    widths = [max(len(str(row[i])) for row in [head, *rows]) for i in range(len(head))]
    print(
        f"idle footprint: median of {report['runs']} run(s), {report['idle_s']:g} s idle, "
        f"{report['cpus']} CPUs; ratio = tdauto / baseline (bare Celery)"
    )
    print("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(
            "  ".join(
                str(c).rjust(w) if i else str(c).ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    for mode, m in report["modes"].items():
        for system in ("tdauto", "baseline"):
            runs = m[system]["runs"]
            stops = ", ".join(f"{r['stop_s']:.1f}" for r in runs)
            left = sum(len(r["leftovers"]) for r in runs)
            ok = all(r["stopped_in_time"] for r in runs) and not left
            print(
                f"stop {mode:<5} {system:<8}: {'ok' if ok else 'FAILED'} "
                f"(exit after {stops} s; {left} leftover processes)"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="Runs per system and mode.")
    parser.add_argument("--idle", type=float, default=10.0, help="Idle seconds before measuring.")
    parser.add_argument("--modes", default="local,redis", help="Comma-separated: local, redis.")
    parser.add_argument("--ready-timeout", type=float, default=120.0)
    parser.add_argument("--json", action="store_true", help="Print the report as JSON.")
    args = parser.parse_args()
    # Settings read TDAUTO_* variables: clear them so that the baseline's config (built here
    # from tdauto's settings) and every process started here see the same defaults.
    for key in [k for k in os.environ if k.startswith("TDAUTO_")]:
        del os.environ[key]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or set(modes) - {"local", "redis"} or args.runs < 1:
        parser.error("--modes takes local and/or redis; --runs at least 1")

    report: dict[str, Any] = {
        "benchmark": "idle_footprint",
        "runs": args.runs,
        "idle_s": args.idle,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "modes": {},
    }
    work = Path(tempfile.mkdtemp(prefix="tdauto-bench-idle-"))
    redis_server = None
    try:
        for mode in modes:
            broker_url = None
            if mode == "redis":
                redis_server = start_redis(work / "redis", plain_fallback=True)
                broker_url = redis_server.url
            results: dict[str, list[Run]] = {"tdauto": [], "baseline": []}
            for i in range(args.runs):
                order = (run_tdauto, run_baseline) if i % 2 == 0 else (run_baseline, run_tdauto)
                for fn in order:
                    if broker_url:
                        flush(broker_url)
                    run = fn(mode, broker_url, work, args)
                    results[run.system].append(run)
                    if not args.json:
                        print(
                            f"  {mode} run {i + 1} {run.system}: ready {run.ready_s:.2f} s, "
                            f"RSS {run.rss_mib:.1f} MiB, {run.procs} processes",
                            file=sys.stderr,
                            flush=True,
                        )
            t, b = summarize(results["tdauto"]), summarize(results["baseline"])
            report["modes"][mode] = {
                "tdauto": {"median": t, "runs": [asdict(r) for r in results["tdauto"]]},
                "baseline": {"median": b, "runs": [asdict(r) for r in results["baseline"]]},
                "ratio": {k: ratio(t[k], b[k]) for k in ("ready_s", "rss_mib", "uss_mib")},
            }
            if redis_server is not None:
                redis_server.stop()
                redis_server = None
    finally:
        if redis_server is not None:
            redis_server.stop()
        Spawned.kill_all()
        shutil.rmtree(work, ignore_errors=True)

    all_runs = [
        r for m in report["modes"].values() for s in ("tdauto", "baseline") for r in m[s]["runs"]
    ]
    report["clean_stop"] = all(r["stopped_in_time"] and not r["leftovers"] for r in all_runs)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    return 0 if report["clean_stop"] else 1


if __name__ == "__main__":
    sys.exit(main())
