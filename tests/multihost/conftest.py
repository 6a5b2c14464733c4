"""A small cluster per test: Redis on one host, beats and workers on three others.

Hosts are network namespaces (``netns.py``) with their own addresses; each tdauto process
runs inside its host through ``ip netns exec``, with its own ``TDAUTO_HOST`` and data dir,
and reaches Redis over the switch. The test process drives the system from the root
namespace, like an operator's machine. Teardown kills every process of every host and
deletes the namespaces, whether the test passed or not (and the next run removes any a
crashed run left behind).

Timings are shortened (leases and the leader lock of 6 s) so a test sees a failover in
seconds; the mechanisms are the ones a production deployment runs.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from kombu.exceptions import OperationalError

from tdauto import AutomationSystems
from tdauto.store.keys import Keys
from tests.multihost.netns import Host, Network, require_netns

REPO = Path(__file__).resolve().parents[2]
PLUGINS = "tests.multihost.plugin_actions"
FAST = {
    "TDAUTO_LEASE_TTL_S": "6",
    "TDAUTO_LEASE_RENEW_S": "1",
    "TDAUTO_LEADER_TTL_S": "6",
    "TDAUTO_LEADER_RENEW_S": "1",
    "TDAUTO_BEAT_TICK_S": "0.5",
    "TDAUTO_STORE_RECONNECT_S": "60",
    "TDAUTO_KILL_GRACE_S": "1",
    "TDAUTO_MANAGER_INTERVAL_S": "1",
}
WORKER_HOSTS = ("h1", "h2", "h3")
BEAT_HOSTS = ("h1", "h2")


def wait_for(predicate: Callable[[], object], timeout_s: float, what: str) -> float:
    """Seconds until ``predicate()`` is true; AssertionError naming ``what`` after timeout."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.2)
    return time.monotonic() - started


@dataclass
class Cluster:
    network: Network
    root: Path
    redis_host: Host
    hosts: dict[str, Host]
    system: AutomationSystems
    broker_url: str
    logs: Path
    extra_env: dict[str, str] = field(default_factory=dict)

    def env(self, host: Host) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TDAUTO_")}
        env.update(FAST)
        env.update(
            TDAUTO_BROKER_URL=self.broker_url,
            TDAUTO_HOST=host.name,
            TDAUTO_DATA_DIR=str(self.root / "hosts" / host.name),
            TDAUTO_PLUGINS=PLUGINS,
            TDAUTO_ALLOWED_PATHS=str(self.root),
            PYTHONPATH=str(REPO),
        )
        env.update(self.extra_env)
        return env

    def start_worker(self, name: str, pool: str = "cpu") -> None:
        host = self.hosts[name]
        host.spawn(
            [sys.executable, "-m", "tdauto.cli", "worker", pool],
            self.env(host),
            self.logs / f"{name}-worker-{pool}.log",
            REPO,
        )

    def start_beat(self, name: str) -> None:
        host = self.hosts[name]
        host.spawn(
            [sys.executable, "-m", "tdauto.cli", "beat"],
            self.env(host),
            self.logs / f"{name}-beat.log",
            REPO,
        )

    def ping(self) -> set[str]:
        """Node names that answer a ping now (none while the broker connection recovers)."""
        seen: set[str] = set()
        try:
            replies = self.system.app.control.ping(timeout=1.0) or []
        except (OSError, redis.RedisError, OperationalError):
            return seen
        for reply in replies:
            seen.update(reply)
        return seen

    def wait_workers(self, names: set[str], timeout_s: float = 90) -> None:
        try:
            wait_for(lambda: names <= self.ping(), timeout_s, f"workers {sorted(names)}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.log_tails()}") from None

    def leader_host(self) -> str | None:
        client = redis.Redis.from_url(self.broker_url, decode_responses=True)
        try:
            token = client.get(Keys(self.system.settings.key_prefix).beat_leader)
        finally:
            client.close()
        return str(token).split(":", 1)[0] if token else None

    def log_tails(self, chars: int = 3000) -> str:
        parts = []
        for log in sorted(self.logs.glob("*.log")):
            parts.append(f"--- {log.name}\n{log.read_text(errors='replace')[-chars:]}")
        return "\n".join(parts)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    try:
        require_netns()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    redis_binary = shutil.which("redis-server")
    if redis_binary is None:
        pytest.fail("redis-server not found: apt-get install -y redis-server", pytrace=False)
    network = Network()
    atexit.register(network.down)  # even if pytest itself is interrupted
    system: AutomationSystems | None = None
    try:
        network.up()
        redis_host = network.add_host("redis", 1)
        hosts = {name: network.add_host(name, 10 + i) for i, name in enumerate(WORKER_HOSTS, 1)}
        logs = tmp_path / "logs"
        redis_dir = tmp_path / "redis"
        redis_dir.mkdir()
        redis_host.spawn(
            [redis_binary, "--bind", redis_host.address, "--port", "6379",
             "--protected-mode", "no", "--dir", str(redis_dir), "--appendonly", "yes",
             "--save", "", "--maxmemory-policy", "noeviction"],
            dict(os.environ),
            logs / "redis.log",
            tmp_path,
        )
        broker_url = f"redis://{redis_host.address}:6379/0"
        probe = redis.Redis.from_url(broker_url, socket_connect_timeout=1)
        wait_for(lambda: _pings(probe), 20, f"redis-server on {redis_host.address}")
        probe.close()
        system = AutomationSystems(
            broker_url=broker_url,
            data_dir=tmp_path / "controller",
            plugins=[PLUGINS],
            allowed_paths=[tmp_path],
            host="controller",
        )
        cluster = Cluster(network, tmp_path, redis_host, hosts, system, broker_url, logs)
        for name in BEAT_HOSTS:
            cluster.start_beat(name)
        for name in WORKER_HOSTS:
            cluster.start_worker(name)
        cluster.wait_workers({f"cpu@{name}" for name in WORKER_HOSTS})
        yield cluster
    finally:
        if system is not None:
            system.stop()
        network.down()
        atexit.unregister(network.down)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
