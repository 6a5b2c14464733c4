"""Where a run's time goes in the store: the engine in-process on ``FileStore`` and on
``RedisStore``, with no broker and no Celery.

Each run is what a trigger and a worker do for a one-action ``noop`` execution
(``benchmarks/noop_plugin.py``): the trigger's path of ``AutomationSystems.trigger_sync``
(``task_definition``, ``new_execution``, ``runner.start_new``: ``create_admitted``, which the
file store does as create, admit and update) on one runtime, then ``runner.run_action`` of
the message it sent (claim with its lease, the handler under ``watch.run_watched``, the
success that ends the run: lease taken, place released, rollup, dependents) on a second
runtime with a store of its own on the same data (the worker's process). Senders record
instead of publishing. ``--runs`` (1,000) runs one after another are timed per store: runs/s
and µs per run.

For the file store it then prints, per run: the calls of each store method and their time
(inclusive: ``update_execution`` contains the effects it applies), the fsyncs, the files
rewritten whole (``_write_atomic``) by file, and the ``flock`` holds; then the top functions
of a ``cProfile`` of the same loop by own time. ``--inflight`` (0,100,1000) repeats the file
store's timing with that many other runs in flight (entries in ``state/active.json`` and
leases in ``state/timers.json``, which are read and rewritten whole on every change), so the
cost that grows with the number of runs in flight shows.

    .venv/bin/python benchmarks/local_store.py [--runs 1000] [--inflight 0,100,1000] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import functools
import io
import itertools
import json
import os
import platform
import pstats
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from _common import start_redis  # noqa: E402

from tdauto.actions.registry import REGISTRY, load_plugins  # noqa: E402
from tdauto.engine.executions import new_execution  # noqa: E402
from tdauto.engine.runner import run_action, start_new  # noqa: E402
from tdauto.engine.runtime import Runtime  # noqa: E402
from tdauto.models import ExecutionStatus, Task, Trigger  # noqa: E402
from tdauto.settings import Settings  # noqa: E402
from tdauto.store import files as files_module  # noqa: E402
from tdauto.store.backend import Store  # noqa: E402
from tdauto.store.files import FileStore  # noqa: E402
from tdauto.store.redis import RedisStore  # noqa: E402

PLUGIN = "benchmarks.noop_plugin"
STORE_METHODS = (
    "task_definition",
    "create_admitted",
    "create_execution",
    "admit",
    "get_execution",
    "peek_execution",
    "update_execution",
    "timer_set",
    "timer_take",
    "timer_get",
    "release",
    "append_log",
    "add_rollup",
    "dependents",
    "reserve",
    "list_executions",
)


class Recorder:
    """A sender that keeps the messages instead of publishing them."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, list[Any], str, str | None]] = []
        self.lock = threading.Lock()

    def __call__(
        self,
        name: str,
        args: list[Any],
        queue: str,
        priority: int = 5,
        *,
        shadow: str | None = None,
        record: str | None = None,
    ) -> None:
        with self.lock:
            self.sent.append((name, args, queue, record))


class Pair:
    """The trigger's runtime and the worker's, each with a store of its own on one data."""

    def __init__(self, make_store: Callable[[], Store], settings: Settings) -> None:
        self.app = Runtime(settings, make_store(), REGISTRY, Recorder())
        self.worker = Runtime(settings, make_store(), REGISTRY, Recorder())
        data = {
            "name": "bench-noop",
            "type": "maintenance",
            "schedule": "interval",
            "schedule_config": {"every": "1d"},
            "actions": [{"type": "noop"}],
            "overlap": "allow",
        }
        task = Task.model_validate(data, context=self.app.validation_context())
        self.task, _ = self.app.store.create_task(task, time.time() + 86400)

    def one_run(self) -> str:
        """A trigger as ``trigger_sync`` makes it, then the worker's delivery of its message."""
        rt = self.app
        found = rt.store.task_definition(self.task.id)
        assert found is not None
        ex = new_execution(found.task, rt.registry, Trigger.MANUAL)
        for run in ex.actions:
            rt.registry.parse_params(run.type, run.params, rt.validation_context())
        start_new(rt, ex, found.task, found.version)
        sent: Recorder = rt.send  # type: ignore[assignment]
        name, args, queue, record = sent.sent.pop()
        assert name == "tdauto.action.noop", name
        status = run_action(self.worker, args[0], args[1], queue, hint=record)
        assert status is ExecutionStatus.SUCCEEDED, status
        return str(ex.id)

    def close(self) -> None:
        self.app.store.close()
        self.worker.store.close()


def timed_runs(pair: Pair, runs: int) -> dict[str, Any]:
    """Runs/s over ``runs``, and µs per run in each tenth of them: a cost that grows with
    the executions already recorded shows as a rise from the first tenth to the last."""
    tenth = max(1, runs // 10)
    marks = [(0, time.perf_counter())]
    ids = []
    for i in range(runs):
        ids.append(pair.one_run())
        if (i + 1) % tenth == 0 or i + 1 == runs:
            marks.append((i + 1, time.perf_counter()))
    elapsed = marks[-1][1] - marks[0][1]
    last = pair.app.store.get_execution(ids[-1])
    assert last is not None and last.status is ExecutionStatus.SUCCEEDED
    chunks = [(tb - ta) / (b - a) * 1e6 for (a, ta), (b, tb) in itertools.pairwise(marks)]
    return {
        "runs": runs,
        "s": elapsed,
        "per_s": runs / elapsed,
        "us_per_run": elapsed / runs * 1e6,
        "us_per_run_by_tenth": chunks,
    }


# --- instrumentation of the file store -------------------------------------------------------


class Tally:
    """Calls and inclusive time per store method, fsyncs, files rewritten, flock holds."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.fsyncs = 0
        self.rewrites: Counter[str] = Counter()
        self.rewrite_bytes: Counter[str] = Counter()
        self.flocks: Counter[str] = Counter()


def _file_kind(root: Path, path: Path) -> str:
    """``state/timers.json``; per-record files by folder (``executions/*.json``)."""
    rel = Path(os.path.relpath(path, root))
    if rel.parts[0] in ("executions", "tasks", "logs") or rel.parts[:2] == ("metrics", "rollups"):
        return str(rel.parent / ("latest.json" if rel.name == "latest.json" else "*.json"))
    return str(rel)


@contextlib.contextmanager
def instrumented(root: Path) -> Iterator[Tally]:
    """Patch FileStore's methods and the file helpers to count into a ``Tally``."""
    tally = Tally()
    saved: list[tuple[Any, str, Any]] = []

    def patch(owner: Any, name: str, wrapper: Any) -> None:
        # inherited methods (create_admitted) are removed again, not copied onto FileStore
        saved.append((owner, name, vars(owner).get(name)))
        setattr(owner, name, wrapper)

    for method in STORE_METHODS:
        original = getattr(FileStore, method)

        def timing(*a: Any, _f: Any = original, _m: str = method, **k: Any) -> Any:
            t = time.perf_counter()
            try:
                return _f(*a, **k)
            finally:
                tally.calls[_m] += 1
                tally.seconds[_m] += time.perf_counter() - t

        patch(FileStore, method, functools.wraps(original)(timing))

    real_write, real_flock, real_fsync = (
        files_module._write_atomic,
        files_module._flock,
        files_module.os.fsync,
    )

    def write(path: Path, text: str) -> None:
        kind = _file_kind(root, path)
        tally.rewrites[kind] += 1
        tally.rewrite_bytes[kind] += len(text.encode())
        real_write(path, text)

    def fsync(fd: int) -> None:
        tally.fsyncs += 1
        real_fsync(fd)

    def flock(path: Path) -> Any:
        tally.flocks[_file_kind(root, path)] += 1
        return real_flock(path)

    patch(files_module, "_write_atomic", write)
    patch(files_module, "_flock", flock)
    patch(os, "fsync", fsync)
    try:
        yield tally
    finally:
        for owner, name, value in reversed(saved):
            if value is None:
                delattr(owner, name)
            else:
                setattr(owner, name, value)


def breakdown(tally: Tally, runs: int) -> dict[str, Any]:
    return {
        "store_calls": {
            m: {"calls": tally.calls[m] / runs, "us": tally.seconds[m] / runs * 1e6}
            for m in sorted(tally.calls, key=lambda m: -tally.seconds[m])
        },
        "fsyncs": tally.fsyncs / runs,
        "rewrites": {
            k: {"count": c / runs, "bytes": tally.rewrite_bytes[k] / c}
            for k, c in tally.rewrites.most_common()
        },
        "flocks": {k: c / runs for k, c in tally.flocks.most_common()},
    }


def profile(pair: Pair, runs: int, top: int) -> list[dict[str, Any]]:
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(runs):
        pair.one_run()
    profiler.disable()
    stats = pstats.Stats(profiler, stream=io.StringIO())
    rows = []
    for (filename, line, name), (_cc, calls, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        where = os.path.relpath(filename, ROOT) if filename.startswith(str(ROOT)) else filename
        if "site-packages/" in where:
            where = where.split("site-packages/", 1)[1]
        rows.append(
            {
                "function": f"{where}:{line}({name})",
                "calls": calls / runs,
                "own_us": tottime / runs * 1e6,
                "cum_us": cumtime / runs * 1e6,
            }
        )
    rows.sort(key=lambda r: -r["own_us"])
    return rows[:top]


def fill_inflight(root: Path, count: int) -> None:
    """``count`` other runs in flight: admitted (``state/active.json``, under another task)
    with a live lease (``state/timers.json``), as many runs started and not yet ended."""
    state = root / "state"
    ids = [f"{n:032x}" for n in range(count)]
    active = {"task": {"other-task": ids} if ids else {}, "lock": {}}
    far = time.time() + 86400
    timers = {"leases": {f"{i}:0:1": far for i in ids}} if ids else {}
    (state / "active.json").write_text(json.dumps(active))
    (state / "timers.json").write_text(json.dumps(timers))


# --- main ----------------------------------------------------------------------------------


def file_pair(root: Path, settings: Settings) -> Pair:
    return Pair(lambda: FileStore(root, settings.log_max_bytes), settings)


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    load_plugins([PLUGIN])
    report: dict[str, Any] = {
        "benchmark": "local_store",
        "runs": args.runs,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_before": os.getloadavg(),
        "stores": {},
    }
    inflight = [int(x) for x in args.inflight.split(",") if x.strip()] or [0]

    for depth in inflight:
        root = work / f"files-{depth}"
        settings = Settings(data_dir=root)
        pair = file_pair(root, settings)
        fill_inflight(root, depth)
        for _ in range(args.warmup):
            pair.one_run()
        report["stores"][f"files, {depth} in flight"] = timed_runs(pair, args.runs)
        if depth == inflight[0]:
            with instrumented(root) as tally:
                for _ in range(args.runs):
                    pair.one_run()
            report["files_breakdown"] = {"in_flight": depth, **breakdown(tally, args.runs)}
            report["files_profile"] = profile(pair, args.runs, args.top)
        pair.close()

    if not args.no_redis:
        server = start_redis(work / "redis", plain_fallback=True)
        try:
            settings = Settings(data_dir=work / "redis-data", broker_url=server.url)
            pair = Pair(lambda: RedisStore(server.url, settings.key_prefix), settings)
            for _ in range(args.warmup):
                pair.one_run()
            report["stores"]["redis"] = timed_runs(pair, args.runs)
            pair.close()
        finally:
            server.stop()
    report["load_after"] = os.getloadavg()
    return report


def print_report(report: dict[str, Any], top: int) -> None:
    print(
        f"engine in-process, {report['runs']} one-action noop runs per store "
        f"(trigger + worker delivery, no broker); {report['cpus']} CPUs, load "
        f"{report['load_before'][0]:.2f} -> {report['load_after'][0]:.2f}"
    )
    for name, s in report["stores"].items():
        tenths = s["us_per_run_by_tenth"]
        print(
            f"  {name:<24} {s['per_s']:8.1f} runs/s  {s['us_per_run']:9.0f} µs/run  "
            f"(first tenth {tenths[0]:.0f}, last tenth {tenths[-1]:.0f} µs/run)"
        )
    b = report["files_breakdown"]
    print(f"\nfile store, {b['in_flight']} other runs in flight, per run:")
    print(f"  fsyncs: {b['fsyncs']:.1f}   flock holds: {sum(b['flocks'].values()):.1f}")
    print("  store calls (inclusive µs; update_execution includes the effects it applies):")
    for method, c in b["store_calls"].items():
        print(f"    {method:<18} {c['calls']:5.2f} calls  {c['us']:8.0f} µs")
    print("  files rewritten whole (temp + fsync + rename):")
    for kind, c in b["rewrites"].items():
        print(f"    {kind:<32} {c['count']:5.2f} x {c['bytes']:9.0f} bytes")
    print("  flock holds: " + ", ".join(f"{k} {v:.2f}" for k, v in b["flocks"].items()))
    print(f"\ncProfile, top {top} by own time (µs per run):")
    for row in report["files_profile"]:
        print(
            f"  {row['own_us']:8.0f} own {row['cum_us']:9.0f} cum {row['calls']:7.2f} calls  "
            f"{row['function']}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000, help="Runs timed per store.")
    parser.add_argument("--warmup", type=int, default=20, help="Untimed runs first.")
    parser.add_argument(
        "--inflight", default="0,100,1000", help="Other runs in flight (comma-separated)."
    )
    parser.add_argument("--top", type=int, default=20, help="cProfile rows.")
    parser.add_argument("--no-redis", action="store_true", help="Only the file store.")
    parser.add_argument("--json", action="store_true", help="Print the report as JSON.")
    args = parser.parse_args()
    for key in [k for k in os.environ if k.startswith("TDAUTO_")]:
        del os.environ[key]
    work = Path(tempfile.mkdtemp(prefix="tdauto-bench-store-"))
    try:
        report = run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
