"""Redis high availability on this machine, for tests: a master, a replica and three sentinels
(``redis-server --sentinel``), each a real process on its own free port.

The master needs a password (``requirepass``, and ``masterauth`` so the replica can follow it
and be followed after a failover) and so do the sentinels: what the Kubernetes and compose
files run, and what ``TDAUTO_BROKER_URL`` and ``TDAUTO_SENTINEL_PASSWORD`` must carry. Writes
are durable as docs/deployment.md asks: ``appendfsync always`` on both servers and, on the
master, ``min-replicas-to-write 1`` (no write is acknowledged while no replica follows).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import redis

from tests.support.redis_server import NOT_FOUND, RedisServer, free_port

MASTER = "tdauto-ha"
PASSWORD = "master-secret"
SENTINEL_PASSWORD = "sentinel-secret"
DOWN_AFTER_MS = 1000  # a master silent this long is down; a failover follows within seconds


class Sentinel:
    """One ``redis-server --sentinel`` watching ``MASTER``."""

    def __init__(self, directory: Path, master_port: int) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(NOT_FOUND)
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.config = directory / "sentinel.conf"  # sentinels rewrite their own config file
        self.config.write_text(
            "\n".join(
                [
                    f"port {self.port}",
                    "bind 127.0.0.1",
                    f"dir {directory}",
                    f"logfile {directory / 'sentinel.log'}",
                    f"requirepass {SENTINEL_PASSWORD}",
                    f"sentinel sentinel-pass {SENTINEL_PASSWORD}",
                    f"sentinel monitor {MASTER} 127.0.0.1 {master_port} 2",
                    f"sentinel auth-pass {MASTER} {PASSWORD}",
                    f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}",
                    f"sentinel failover-timeout {MASTER} 10000",
                    f"sentinel parallel-syncs {MASTER} 1",
                    "",
                ]
            )
        )
        self._process = subprocess.Popen(
            [binary, str(self.config), "--sentinel"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def client(self) -> redis.Redis:
        return redis.Redis(
            port=self.port, password=SENTINEL_PASSWORD, socket_timeout=1.0, decode_responses=True
        )

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


class SentinelCluster:
    """A master, one replica of it and three sentinels; ``url`` is ``TDAUTO_BROKER_URL``."""

    def __init__(self, directory: Path) -> None:
        self.master = RedisServer(
            directory / "master",
            password=PASSWORD,
            extra_args=(
                "--appendfsync",
                "always",
                "--min-replicas-to-write",
                "1",
                "--min-replicas-max-lag",
                "10",
            ),
        )
        self.replica = RedisServer(
            directory / "replica",
            password=PASSWORD,
            extra_args=(
                "--appendfsync",
                "always",
                "--replicaof",
                "127.0.0.1",
                str(self.master.port),
            ),
        )
        self.sentinels: list[Sentinel] = []
        try:  # a cluster that fails to come up leaves no process behind
            self.master.start()
            self.replica.start()
            for i in range(3):
                self.sentinels.append(Sentinel(directory / f"sentinel-{i}", self.master.port))
            self.wait_for(self._ready, "sentinels that see the master, the replica and each other")
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        first, *rest = (s.port for s in self.sentinels)
        return ";".join(
            [f"sentinel://:{PASSWORD}@127.0.0.1:{first}/0"]
            + [f"sentinel://127.0.0.1:{port}" for port in rest]
        )

    def master_port(self) -> int | None:
        """The master's port as the first sentinel that answers sees it."""
        for sentinel in self.sentinels:
            try:  # INFO: redis-py 6.4 fails to parse SENTINEL replies on a plain client
                state = sentinel.client().info("sentinel").get("master0", {})
            except redis.RedisError:
                continue
            if "address" in state:
                return int(str(state["address"]).rpartition(":")[2])
        return None

    def _ready(self) -> bool:
        try:
            synced = self.replica_client().info("replication").get("master_link_status") == "up"
            for sentinel in self.sentinels:
                # INFO: redis-py 6.4's SENTINEL MASTER reply parser fails
                state = sentinel.client().info("sentinel").get("master0", {})
                if int(state.get("slaves", 0)) < 1 or int(state.get("sentinels", 0)) < 3:
                    return False
        except redis.RedisError:
            return False
        return bool(synced)

    def replica_client(self) -> redis.Redis:
        return redis.Redis(port=self.replica.port, password=PASSWORD, decode_responses=True)

    def kill_master(self) -> None:
        """SIGKILL the master: no shutdown, no last flush to the replica."""
        self.master.kill()

    def wait_failover(self, timeout_s: float = 60.0) -> float:
        """Seconds until the sentinels name the replica master and it takes writes."""
        return self.wait_for(
            lambda: (
                self.master_port() == self.replica.port
                and self.replica_client().info("replication")["role"] == "master"
            ),
            "the sentinels to promote the replica",
            timeout_s,
        )

    @staticmethod
    def wait_for(predicate: Callable[[], object], what: str, timeout_s: float = 30.0) -> float:
        started = time.monotonic()
        while not predicate():
            if time.monotonic() - started > timeout_s:
                raise AssertionError(f"not within {timeout_s}s: {what}")
            time.sleep(0.1)
        return time.monotonic() - started

    def stop(self) -> None:
        for sentinel in self.sentinels:
            sentinel.stop()
        self.replica.stop()
        self.master.stop()
