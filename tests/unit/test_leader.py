"""Beat leader election: both lock kinds, and a scheduler that only dispatches while it leads."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import time
from collections.abc import Iterator
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import pytest
import redis

import tdauto.scheduler as scheduler_module
from tdauto.app import make_app
from tdauto.leader import (
    FileLeaderLock,
    LeaderLock,
    RedisLeaderLock,
    leader_lock_for,
    new_owner_token,
)
from tdauto.scheduler import StoreScheduler
from tdauto.settings import Settings
from tdauto.store.keys import Keys
from tests.support.redis_server import RedisServer

KEY = "test:beat:leader"
SPAWN = multiprocessing.get_context("spawn")


def wait_until(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


# --- Redis lock ----------------------------------------------------------------------------------


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    r = redis.Redis.from_url(redis_server.url, decode_responses=True)
    yield r
    r.close()


def redis_lock(client: redis.Redis, ttl_s: float = 30.0, **kwargs: Any) -> RedisLeaderLock:
    return RedisLeaderLock(client, KEY, new_owner_token(), ttl_s, **kwargs)


def test_redis_only_one_leads_and_the_value_names_it(client: redis.Redis) -> None:
    a, b = redis_lock(client), redis_lock(client)
    assert a.try_acquire() and a.is_leader
    assert not b.try_acquire() and not b.is_leader
    assert client.get(KEY) == a.owner_token == a.holder() == b.holder()
    assert a.owner_token.startswith(f"{socket.gethostname()}:{os.getpid()}:")
    assert a.owner_token != b.owner_token


def test_redis_renew_keeps_the_lead_past_the_ttl(client: redis.Redis) -> None:
    # Given a lock with a 1 s lease, renewed every 0.2 s for three leases
    a, b = redis_lock(client, ttl_s=1.0), redis_lock(client, ttl_s=1.0)
    assert a.try_acquire()
    end = time.monotonic() + 3.0
    while time.monotonic() < end:
        time.sleep(0.2)
        # Then the holder keeps it and the other never gets it
        assert a.try_acquire()
        assert not b.try_acquire()
    assert 0 < client.pttl(KEY) <= 1000


def test_redis_standby_acquires_only_after_the_ttl_once_renewals_stop(client: redis.Redis) -> None:
    ttl_s = 1.5
    a, b = redis_lock(client, ttl_s=ttl_s), redis_lock(client, ttl_s=ttl_s)
    started = time.monotonic()
    assert a.try_acquire()
    # When the holder stops renewing (it died), the standby keeps trying every tick
    while not b.try_acquire():
        assert client.get(KEY) == a.owner_token
        assert time.monotonic() - started < 30, "the lease never expired"
        time.sleep(0.05)
    # Then it leads, and not before the lease ran out (Redis cannot expire a key early)
    assert time.monotonic() - started >= ttl_s * 0.95
    assert b.is_leader and b.holder() == b.owner_token


def test_redis_release_lets_the_other_acquire_at_once(client: redis.Redis) -> None:
    a, b = redis_lock(client), redis_lock(client)
    assert a.try_acquire()
    a.release()
    assert not a.is_leader
    assert b.try_acquire()
    a.release()  # a late release of a lock that moved on leaves the new holder alone
    assert client.get(KEY) == b.owner_token


def test_redis_holder_whose_key_was_stolen_loses_on_renew(client: redis.Redis) -> None:
    a = redis_lock(client)
    assert a.try_acquire()
    client.set(KEY, "thief")
    assert not a.try_acquire() and not a.is_leader
    assert not a.try_acquire()  # and it does not get it back while the thief holds it
    a.release()
    assert client.get(KEY) == "thief"


def test_redis_holder_whose_key_expired_loses_on_renew_then_rejoins(client: redis.Redis) -> None:
    a = redis_lock(client)
    assert a.try_acquire()
    client.delete(KEY)  # the lease expired while the holder was away
    assert not a.try_acquire() and not a.is_leader
    assert a.try_acquire()  # as a standby again, it wins the free lock


def test_redis_stale_lease_is_not_leadership_until_renewed(client: redis.Redis) -> None:
    # Given a leader whose clock says its last renewal is older than ttl - margin (a pause)
    now = [100.0]
    a = redis_lock(client, ttl_s=15.0, safety_margin_s=5.0, clock=lambda: now[0])
    assert a.try_acquire() and a.is_leader
    now[0] += 9.9
    assert a.is_leader
    now[0] += 0.2
    # Then it is not leader, with no I/O, until a renewal succeeds
    assert not a.is_leader
    assert a.try_acquire() and a.is_leader


def test_redis_error_means_not_leader(redis_server: RedisServer) -> None:
    a_client = redis.Redis.from_url(redis_server.url, socket_timeout=0.5)
    a = RedisLeaderLock(a_client, KEY, new_owner_token(), 30.0)
    assert a.try_acquire()
    redis_server.kill()
    assert not a.try_acquire() and not a.is_leader
    redis_server.start()
    assert a.try_acquire()  # its own key (if the AOF kept it) or a free one
    a_client.close()


def test_factory_picks_by_mode(tmp_path: Path, redis_server: RedisServer) -> None:
    local = leader_lock_for(Settings(data_dir=tmp_path / "data", host="h1"))
    assert isinstance(local, FileLeaderLock)
    assert local.path == (tmp_path / "data" / "state" / "beat.lock").resolve()
    assert local.owner_token.startswith("h1:")
    settings = Settings(broker_url=redis_server.url, key_prefix="pfx", host="h2")
    remote = leader_lock_for(settings)
    assert isinstance(remote, RedisLeaderLock)
    assert remote.key == Keys("pfx").beat_leader == "pfx:beat:leader"
    assert remote.ttl_ms == 15_000
    assert remote.try_acquire() and remote.holder() == remote.owner_token
    remote.release()
    assert remote.holder() is None


def test_renew_interval_must_be_under_half_the_ttl() -> None:
    with pytest.raises(ValueError, match="leader_renew_s"):
        Settings(leader_ttl_s=10, leader_renew_s=5)


# --- file lock -----------------------------------------------------------------------------------


def hold_file_lock(path: str, token: str, held: Event, release: Event, released: Event) -> None:
    """Child process: take the lock, say so, hold it until asked, release, then idle."""
    lock = FileLeaderLock(Path(path), token)
    while not lock.try_acquire():
        time.sleep(0.02)
    held.set()
    release.wait()
    lock.release()
    released.set()
    time.sleep(600)


class Holder:
    """A child process holding the file lock."""

    def __init__(self, path: Path) -> None:
        self.held, self.release, self.released = SPAWN.Event(), SPAWN.Event(), SPAWN.Event()
        self.token = new_owner_token("child")
        self.process = SPAWN.Process(
            target=hold_file_lock,
            args=(str(path), self.token, self.held, self.release, self.released),
            daemon=True,
        )
        self.process.start()
        assert self.held.wait(30), "child never took the lock"

    def kill(self) -> None:
        if self.process.is_alive():
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.join(10)


@pytest.fixture
def lock_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "beat.lock"


def test_file_only_one_process_leads_and_release_hands_over(lock_path: Path) -> None:
    child = Holder(lock_path)
    try:
        mine = FileLeaderLock(lock_path)
        assert not mine.try_acquire() and not mine.is_leader
        assert mine.holder() == child.token
        # When the child releases (and lives on), Then this process leads at once
        child.release.set()
        assert child.released.wait(10)
        assert mine.try_acquire() and mine.is_leader
        assert mine.try_acquire()  # renewing a held flock keeps it
        assert mine.holder() == mine.owner_token
        mine.release()
        assert not mine.is_leader and FileLeaderLock(lock_path).holder() is None
    finally:
        child.kill()


def test_file_lock_is_freed_when_its_holder_is_killed(lock_path: Path) -> None:
    child = Holder(lock_path)
    mine = FileLeaderLock(lock_path)
    try:
        assert not mine.try_acquire()
    finally:
        child.kill()  # SIGKILL: no release, no cleanup; the kernel drops the flock
    assert child.process.exitcode == -signal.SIGKILL
    assert mine.try_acquire()
    mine.release()


def test_file_lock_excludes_within_one_process_and_survives_file_removal(
    lock_path: Path,
) -> None:
    a, b = FileLeaderLock(lock_path), FileLeaderLock(lock_path)
    assert a.try_acquire()
    assert not b.try_acquire()
    # When the lock file is removed (data dir wiped) and another beat locks a new one
    lock_path.unlink()
    assert b.try_acquire()
    # Then the old holder is not leader any more
    assert not a.try_acquire() and not a.is_leader
    b.release()


# --- the scheduler only dispatches while it leads -----------------------------------------------


class StubLock(LeaderLock):
    """A lock whose outcome the test sets; counts what the scheduler asks."""

    def __init__(self) -> None:
        self.owner_token = "stub:1:x"
        self.grant = False
        self.held = False
        self.attempts = 0
        self.releases = 0

    def try_acquire(self) -> bool:
        self.attempts += 1
        self.held = self.grant
        return self.held

    def release(self) -> None:
        self.releases += 1
        self.held = False

    @property
    def is_leader(self) -> bool:
        return self.held

    def holder(self) -> str | None:
        return "other:2:y"


@pytest.fixture
def beat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, StubLock, list]]:
    """A StoreScheduler on a local-mode app with a stub lock, a static entry due every tick,
    and recorders in place of both kinds of dispatch."""
    app = make_app(Settings(data_dir=tmp_path / "data", leader_ttl_s=15, leader_renew_s=5))
    app.conf.beat_schedule = {"often": {"task": "tdauto.test.often", "schedule": 0.001}}
    calls: list[str] = []
    monkeypatch.setattr(scheduler_module, "dispatch_due", lambda rt, now: calls.append("store"))
    lock = StubLock()
    sched = StoreScheduler(app, leader_lock=lock)
    monkeypatch.setattr(sched, "apply_entry", lambda entry, producer=None: calls.append("static"))
    yield sched, lock, calls
    sched.close()


def run_ticks(sched: StoreScheduler, n: int) -> None:
    for _ in range(n):
        sched.tick()
        time.sleep(0.005)


def test_standby_dispatches_nothing_and_tries_every_tick(beat: Any) -> None:
    sched, lock, calls = beat
    run_ticks(sched, 5)
    assert calls == [] and not sched.leader
    assert lock.attempts == 5


def test_leader_dispatches_and_renews_only_every_renew_interval(beat: Any) -> None:
    sched, lock, calls = beat
    lock.grant = True
    run_ticks(sched, 5)
    assert sched.leader
    assert "static" in calls and "store" in calls
    assert lock.attempts == 1  # 5 s between renewals; the ticks took milliseconds


def test_lost_lock_stops_dispatch_at_once_and_logs(
    beat: Any, caplog: pytest.LogCaptureFixture
) -> None:
    sched, lock, calls = beat
    lock.grant = True
    with caplog.at_level(logging.INFO, logger="tdauto.scheduler"):
        run_ticks(sched, 2)
        assert "leader: yes" in caplog.text
        # When the lease goes (stale or renewal failed), Then the next tick sends nothing
        lock.grant, lock.held = False, False
        calls.clear()
        run_ticks(sched, 3)
    assert calls == []
    assert any(
        r.levelno == logging.WARNING and "lost leadership" in r.getMessage() for r in caplog.records
    )
    # And it keeps ticking as a standby and comes back when it wins again
    lock.grant = True
    run_ticks(sched, 2)
    assert sched.leader and calls


def test_close_releases_the_lock(beat: Any) -> None:
    sched, lock, _ = beat
    lock.grant = True
    sched.tick()
    sched.close()
    assert lock.releases >= 1 and not sched.leader
