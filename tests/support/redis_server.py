"""A real ``redis-server`` for tests, with persistence on so a test can kill and restart it.

Tests of distributed mode run against the real binary (not a fake), because what they check,
Lua scripts, ``WATCH``, AOF recovery after a crash, is exactly what a fake would get wrong.
A missing binary is an error, not a skip: a green run must mean the Redis tests ran.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

NOT_FOUND = (
    "redis-server not found: install it (apt-get install -y redis-server) "
    "or run the README's test command"
)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1, its data (AOF) and log in ``directory``.

    The port is chosen once, so ``url`` stays valid across ``restart()`` and clients
    reconnect to the same address after a ``kill()``.
    """

    def __init__(
        self,
        directory: Path,
        port: int | None = None,
        ready_timeout_s: float = 10.0,
        password: str | None = None,
        extra_args: tuple[str, ...] = (),
    ):
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(NOT_FOUND)
        self.binary = binary
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.ready_timeout_s = ready_timeout_s
        self.password = password  # requirepass (and masterauth, for a replica)
        self.extra_args = extra_args
        self.log_path = self.directory / "redis.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        """The running server's process id (a benchmark reads its CPU time)."""
        if self._process is None:
            raise RuntimeError("redis-server is not running")
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the server and wait until it answers ``PING`` (after loading its AOF)."""
        if self.running:
            return
        command = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.log_path),
        ]
        if self.password:
            command += ["--requirepass", self.password, "--masterauth", self.password]
        command += list(self.extra_args)
        self._process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        self.wait_ready()

    def wait_ready(self) -> None:
        """Block until the server answers ``PING``; raise with its log if it never does."""
        deadline = time.monotonic() + self.ready_timeout_s
        client = redis.Redis(
            host="127.0.0.1",
            port=self.port,
            password=self.password,
            socket_timeout=1.0,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            while True:
                if self._process is None or self._process.poll() is not None:
                    raise RuntimeError(f"redis-server exited at start:\n{self._log_tail()}")
                try:
                    if client.ping():
                        return
                except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"redis-server on port {self.port} not ready after "
                        f"{self.ready_timeout_s}s:\n{self._log_tail()}"
                    )
                time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        """Clean shutdown: ``SIGTERM``, which redis-server handles as ``SHUTDOWN`` (the AOF is
        fsynced), with ``SIGKILL`` as the fallback. A signal rather than the command because
        the client would retry the connection the server closes, with backoff."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._close(process)

    def kill(self) -> None:
        """Crash it: ``SIGKILL``, no chance to flush (the AOF keeps what was fsynced)."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()
        self._close(process)

    def restart(self) -> None:
        """Stop cleanly (if running) and start again on the same port with the same data."""
        self.stop()
        self.start()

    def _close(self, process: subprocess.Popen[bytes]) -> None:
        if process.stderr is not None:
            process.stderr.close()
        self._process = None

    def _log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            text = ""
        if not text and self._process is not None and self._process.stderr is not None:
            with contextlib.suppress(OSError, ValueError):
                if self._process.poll() is not None:
                    text = self._process.stderr.read().decode(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
