"""Helpers shared by the benchmark scripts: their child processes and a private Redis.

Imported as ``_common`` by the scripts, which are run as files (``benchmarks/`` is then the
first entry of ``sys.path``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
REDIS_SUPPORT = ROOT / "tests" / "support" / "redis_server.py"


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
