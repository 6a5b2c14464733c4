"""Helpers shared by the benchmark scripts: their child processes, a private Redis, and the
bare-Celery baseline with tdauto's settings and process shape.

Imported as ``_common`` by the scripts, which are run as files (``benchmarks/`` is then the
first entry of ``sys.path``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from beat_schedule import BEAT_SCHEDULE
from tdauto.app import SETTINGS_KEY, celery_config
from tdauto.resources.pools import load_pool
from tdauto.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
REDIS_SUPPORT = ROOT / "tests" / "support" / "redis_server.py"
BIN = Path(sys.executable).parent
POOLS = ("cpu", "memory", "storage")


# --- processes ---------------------------------------------------------------------------


class Spawned:
    """Every process a script starts, each in its own session, so that none outlives it."""

    procs: list[subprocess.Popen[Any]] = []

    @classmethod
    def popen(cls, argv: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        proc = subprocess.Popen(argv, start_new_session=True, **kwargs)
        cls.procs.append(proc)
        return proc

    @classmethod
    def stop(cls, proc: subprocess.Popen[Any], grace_s: float = 30.0) -> None:
        """SIGTERM to the process group (Celery's warm shutdown), SIGKILL after ``grace_s``."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=grace_s)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # children the parent left behind
        proc.wait()

    @classmethod
    def kill_all(cls, exited_too: bool = False) -> None:
        """SIGKILL to the process group of each process still running (of every one with
        ``exited_too``: children an exited parent left in its group)."""
        for proc in cls.procs:
            if exited_too or proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TDAUTO_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


class LineWatcher(threading.Thread):
    """Reads a process's stdout to the end; notes when the ``ready in`` line came (the line
    ``tdauto up`` prints once every pool answers a ping)."""

    def __init__(self, proc: subprocess.Popen[bytes]):
        super().__init__(daemon=True)
        self.proc = proc
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.ready_at = 0.0
        self.ready_line = ""

    def run(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            self.lines.append(line)
            if not self.ready.is_set() and line.startswith("ready in "):
                self.ready_at = time.monotonic()
                self.ready_line = line
                self.ready.set()


def start_up(
    data: Path, env: dict[str, str], ready_timeout_s: float
) -> tuple[subprocess.Popen[bytes], LineWatcher, float]:
    """Spawn ``tdauto up`` in ``data`` (its own session) and wait for its ``ready in`` line:
    the process, its stdout watcher and the monotonic time of the spawn."""
    started = time.monotonic()
    proc = Spawned.popen(
        [str(BIN / "tdauto"), "up", "--ready-timeout", str(ready_timeout_s)],
        cwd=data,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    watcher = LineWatcher(proc)
    watcher.start()
    deadline = started + ready_timeout_s + 10
    while not watcher.ready.wait(0.05):
        if proc.poll() is not None or time.monotonic() > deadline:
            Spawned.kill_all()
            out = "\n".join(watcher.lines[-30:])
            raise RuntimeError(f"tdauto up never got ready:\n{out}")
    return proc, watcher, started


# --- redis ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PlainRedis:
    """``redis-server`` without persistence, used when tests/support is not there."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found (apt-get install -y redis-server)")
        self.proc = Spawned.popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import redis

        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


def redis_support() -> ModuleType:
    """tests/support/redis_server.py, loaded from its file (``tests`` need not be importable)."""
    spec = importlib.util.spec_from_file_location("_bench_redis_server", REDIS_SUPPORT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def start_redis(directory: Path, *, plain_fallback: bool = False, track: bool = False) -> Any:
    """A started tests/support ``RedisServer`` (AOF on, everysec): the server the tests use.

    With ``plain_fallback``, a ``PlainRedis`` when tests/support is not there; with ``track``,
    its process joins ``Spawned.procs`` (killed with the rest if anything goes wrong).
    """
    server: Any
    if REDIS_SUPPORT.exists() or not plain_fallback:
        server = redis_support().RedisServer(directory)
    else:
        server = PlainRedis(directory)
    server.start()
    if track:
        Spawned.procs.append(server._process)
    return server


# --- the bare-Celery baseline ---------------------------------------------------------------

BASELINE_MODULE = '''\
"""Bare Celery with tdauto's settings and shape (generated by benchmarks/_common.py)."""

import json
import os
import time

from celery import Celery

app = Celery("baseline")
app.conf.update(json.loads({conf!r}))


@app.task(name="tdauto.system.requeue_pending")
def requeue_pending():
    """Stands for tdauto's static beat entry: same name, schedule and queue, no work."""
    return None


@app.task(name="bench.noop")
def noop():
    """Does nothing but note its end: one line appended to BENCH_DONE_FILE."""
    fd = os.open(os.environ["BENCH_DONE_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{{time.time()}}\\n".encode())
    finally:
        os.close(fd)
'''
BASELINE_NOOP = "bench.noop"


def baseline_conf(broker_url: str | None, data: Path) -> dict[str, Any]:
    """tdauto's Celery settings for a data dir of the baseline's own, plus its beat entry."""
    conf = celery_config(Settings(data_dir=data, broker_url=broker_url))
    del conf[SETTINGS_KEY]  # tdauto's own object, not a Celery setting
    conf["beat_schedule"] = BEAT_SCHEDULE
    json.dumps(conf)  # everything must survive the trip through the generated module
    return conf


def flush(url: str) -> None:
    """Empty the Redis at ``url`` between two runs."""
    import redis

    client = redis.Redis.from_url(url)
    client.flushall()
    client.close()


def median(values: list[float | None]) -> float | None:
    """The median of the values measured (None: a run that measured nothing)."""
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b``, tdauto over its baseline; None when either is missing."""
    return None if a is None or not b else a / b


def filesystem_conf(data: Path) -> dict[str, Any]:
    """:func:`baseline_conf` on kombu's ``filesystem://`` transport, as local mode ran before
    ``tdauto.localbroker`` (folders under ``data/broker``, polled every
    ``TDAUTO_POLL_INTERVAL_S``)."""
    conf = baseline_conf(None, data)
    root = data / "broker"
    for sub in ("queue", "control", "processed"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    conf.pop("broker_transport", None)
    conf["broker_url"] = "filesystem://"
    conf["broker_transport_options"] = {
        "data_folder_in": str(root / "queue"),
        "data_folder_out": str(root / "queue"),
        "control_folder": str(root / "control"),
        "processed_folder": str(root / "processed"),
        "polling_interval": Settings().poll_interval_s,
    }
    return conf


def baseline_argvs(
    data: Path, broker_url: str | None, conf: dict[str, Any]
) -> tuple[list[str], list[list[str]]]:
    """Write the baseline's app module into ``data`` and return the node names of its three
    workers and the argvs of its four processes: one ``celery worker`` per pool of
    ``workers/*.py`` (same pool, concurrency and queues, ``-E --without-gossip
    --without-mingle``) and one ``celery beat``; run them with ``PYTHONPATH=data``."""
    (data / "bench_baseline.py").write_text(BASELINE_MODULE.format(conf=json.dumps(conf)))
    settings = Settings(data_dir=data, broker_url=broker_url)
    host = settings.host
    celery = str(BIN / "celery")
    names: list[str] = []
    argvs: list[list[str]] = []
    for pool_name in POOLS:
        spec = load_pool(pool_name)
        name = f"baseline-{spec.name}@{host}"
        names.append(name)
        argv = [
            celery,
            "-A",
            "bench_baseline",
            "worker",
            "-P",
            spec.pool,
            "-c",
            str(spec.concurrency(settings)),
            "-Q",
            ",".join(spec.queues(host)),
            "-n",
            name,
            "-l",
            "INFO",
            "-E",
            "--without-gossip",
            "--without-mingle",
        ]
        if spec.max_memory_per_child_kb:
            argv += ["--max-memory-per-child", str(spec.max_memory_per_child_kb)]
        if spec.max_tasks_per_child:
            argv += ["--max-tasks-per-child", str(spec.max_tasks_per_child)]
        argvs.append(argv)
    argvs.append(
        [
            celery,
            "-A",
            "bench_baseline",
            "beat",
            "-l",
            "INFO",
            "-s",
            str(data / "celerybeat-schedule"),
        ]
    )
    return names, argvs


def start_baseline(
    data: Path,
    names: list[str],
    argvs: list[list[str]],
    env: dict[str, str],
    client: Any,
    ready_timeout_s: float,
) -> tuple[list[subprocess.Popen[bytes]], float]:
    """Spawn the baseline's processes (logs under ``data/logs``) and wait until all of
    ``names`` answer ``client.control.ping``: the processes and the seconds it took."""
    logs = data / "logs"
    logs.mkdir(exist_ok=True)
    started = time.monotonic()
    procs: list[subprocess.Popen[bytes]] = []
    for argv in argvs:
        log = (logs / f"{argv[3]}-{len(procs)}.log").open("ab")
        procs.append(Spawned.popen(argv, cwd=data, env=env, stdout=log, stderr=subprocess.STDOUT))
        log.close()
    seen: set[str] = set()
    while not set(names) <= seen:
        missing = sorted(set(names) - seen)  # the same wait as tdauto up's (tdauto/up.py)
        for reply in (
            client.control.ping(destination=missing, limit=len(missing), timeout=0.5) or []
        ):
            seen.update(reply)
        dead = [p for p in procs if p.poll() is not None]
        if dead or time.monotonic() - started > ready_timeout_s:
            Spawned.kill_all()
            tails = "\n".join(f"--- {f.name}\n" + tail(f, 15) for f in sorted(logs.iterdir()))
            raise RuntimeError(f"baseline never got ready, missing {set(names) - seen}:\n{tails}")
    return procs, time.monotonic() - started
