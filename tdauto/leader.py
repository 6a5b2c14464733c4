"""Leader election for beats: any number may run, one dispatches.

A beat that fires tasks twice is as bad as one that fires none, and a single beat is a single
point of failure; so every beat joins an election and only the winner dispatches (store tasks
and the static system jobs alike). The losers keep ticking and try again every tick, so one of
them takes over when the leader dies; none ever exits because it lost.

Two locks, picked by mode (:func:`leader_lock_for`):

- :class:`RedisLeaderLock` (distributed mode): a key set with ``SET NX PX`` to a random owner
  token, renewed by compare-token-then-``PEXPIRE`` (``store/leader_renew.lua``) well inside its
  TTL, released by compare-token-then-``DEL`` (``store/leader_release.lua``). A dead leader's
  key expires, so a standby leads within the TTL plus one tick. A Redis error or a token
  mismatch means "not leader" at once: a beat that cannot prove it leads must not dispatch.
  The lease is also checked against the local monotonic clock: a leader whose last successful
  renewal is older than ``ttl_s - safety_margin_s`` (the process was paused, say) stops
  dispatching until a renewal succeeds again, because its key may have expired meanwhile.
- :class:`FileLeaderLock` (local mode, one host): ``flock(LOCK_EX | LOCK_NB)`` on
  ``state/beat.lock``, held for the life of the process; the kernel drops it when the process
  dies, so the next beat on the host leads at its next tick.

The slot claim (an execution id derived from ``task_id@fire_ts``) still guarantees that a slot
runs once even if two beats ever overlap; the lock makes that overlap rare and keeps the
system jobs from running twice.

Each lock's value is its owner token (``host:pid:uuid4``), so an operator (or ``tdauto``) can
read which beat leads with :meth:`LeaderLock.holder`.
"""

from __future__ import annotations

import abc
import contextlib
import fcntl
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from functools import cache
from importlib import resources
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from tdauto.redisconn import Endpoint
from tdauto.settings import Settings
from tdauto.store import RedisStore, Store
from tdauto.store.keys import Keys

log = logging.getLogger(__name__)

LOCK_FILE = Path("state") / "beat.lock"
"""The local-mode lock file, relative to the data dir."""

IO_TIMEOUT_CAP_S = 2.0
"""Longest a lock command may block on Redis: a renewal stuck longer than this is a failure,
not a wait, so a hung connection cannot keep a beat dispatching past its lease."""


def new_owner_token(host: str | None = None) -> str:
    """``host:pid:uuid4``: unique per lock instance, and says who holds the lock."""
    return f"{host or socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"


@cache
def _lua(name: str) -> str:
    return resources.files("tdauto.store").joinpath(f"{name}.lua").read_text(encoding="utf-8")


class LeaderLock(abc.ABC):
    """One beat's ticket in the election. Not thread-safe: one scheduler loop owns it."""

    owner_token: str

    @abc.abstractmethod
    def try_acquire(self) -> bool:
        """Acquire the lock, or renew it if held; True while this instance leads. Never
        raises for a lost or unreachable lock: that is False."""

    @abc.abstractmethod
    def release(self) -> None:
        """Give the lock up (if held) so a standby leads at its next tick, not after a TTL."""

    @property
    @abc.abstractmethod
    def is_leader(self) -> bool:
        """Whether this instance may dispatch now, from the last acquire/renew (no I/O)."""

    @abc.abstractmethod
    def holder(self) -> str | None:
        """The current leader's owner token (any instance's), or None if none leads. I/O."""


class RedisLeaderLock(LeaderLock):
    """A leased Redis key (see the module docstring). ``clock`` is monotonic seconds,
    injectable so tests can play a paused process without sleeping."""

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        owner_token: str,
        ttl_s: float,
        *,
        safety_margin_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl_s <= 0:
            raise ValueError(f"ttl_s must be positive, got {ttl_s}")
        margin_s = ttl_s / 3 if safety_margin_s is None else safety_margin_s
        if not 0 <= margin_s < ttl_s:
            raise ValueError(f"safety_margin_s must be in [0, ttl_s={ttl_s}), got {margin_s}")
        self.key = key
        self.owner_token = owner_token
        self.ttl_ms = max(1, round(ttl_s * 1000))
        self.valid_s = ttl_s - margin_s
        self._r = client
        self._clock = clock
        self._renew = client.register_script(_lua("leader_renew"))
        self._release = client.register_script(_lua("leader_release"))
        self._renewed_at: float | None = None  # clock() when the last good acquire/renew was sent

    def try_acquire(self) -> bool:
        # Stamp before the command: Redis starts the TTL after it receives it, so the lease
        # measured from here ends no later than the one Redis enforces.
        sent_at = self._clock()
        try:
            if self._renewed_at is not None:
                held = bool(self._renew(keys=[self.key], args=[self.owner_token, self.ttl_ms]))
            else:
                held = bool(self._r.set(self.key, self.owner_token, nx=True, px=self.ttl_ms))
                # Still ours from before (a renewal whose reply was lost): take it back now
                # rather than wait out our own lease.
                held = held or bool(
                    self._renew(keys=[self.key], args=[self.owner_token, self.ttl_ms])
                )
        except RedisError as exc:
            log.warning("beat leader lock %s: %s: %s", self.key, type(exc).__name__, exc)
            held = False
        self._renewed_at = sent_at if held else None
        return held

    def release(self) -> None:
        # Even when not leading: a renewal whose reply was lost may have left the key ours.
        # The compare-token delete cannot touch another beat's lease.
        self._renewed_at = None
        try:
            self._release(keys=[self.key], args=[self.owner_token])
        except RedisError as exc:  # the key expires by itself within the TTL
            log.warning("beat leader lock %s: release failed: %s", self.key, exc)

    @property
    def is_leader(self) -> bool:
        return self._renewed_at is not None and self._clock() - self._renewed_at < self.valid_s

    def holder(self) -> str | None:
        value = self._r.get(self.key)
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)


class FileLeaderLock(LeaderLock):
    """``flock`` on one file, for beats of one host (see the module docstring).

    The descriptor is close-on-exec, but a ``fork()`` shares it: a forked child keeps the lock
    alive after this process dies, so beats must not fork long-lived children while leading.
    """

    def __init__(self, path: Path, owner_token: str | None = None) -> None:
        self.path = Path(path)
        self.owner_token = owner_token or new_owner_token()
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        if self._fd is not None:
            if self._still_ours(self._fd):
                return True
            log.warning("beat lock file %s was removed or replaced; leadership lost", self.path)
            self._close()
        fd = -1
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if fd >= 0:
                os.close(fd)
            if not isinstance(exc, BlockingIOError):
                log.warning("beat lock file %s: %s", self.path, exc)
            return False
        self._fd = fd
        with contextlib.suppress(OSError):  # the token is for operators; the flock is the lock
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{self.owner_token}\n".encode(), 0)
        return True

    def _still_ours(self, fd: int) -> bool:
        """The path still names the file we locked (a deleted data dir would let a second
        beat lock a new file at the same path)."""
        try:
            return os.fstat(fd).st_ino == os.stat(self.path).st_ino
        except OSError:
            return False

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        self._close()

    def _close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    @property
    def is_leader(self) -> bool:
        return self._fd is not None

    def holder(self) -> str | None:
        if self._fd is not None:
            return self.owner_token
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            try:  # a shared lock we can take means nobody holds the exclusive one
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                text = os.read(fd, 4096).decode(errors="replace").strip()
                return text or "unknown"
            return None
        finally:
            os.close(fd)


def leader_lock_for(settings: Settings, store: Store | None = None) -> LeaderLock:
    """The lock for ``settings``' mode: a file lock under the data dir in local mode, else a
    Redis key under the store's prefix.

    The Redis lock gets its own client rather than the store's: its commands need short
    timeouts (a stuck renewal must fail before the lease runs out), which the store's client,
    made for long scans and ``WATCH`` loops, does not have. ``store`` only lends its key schema.
    """
    token = new_owner_token(settings.host)
    if settings.broker_url is None:
        return FileLeaderLock(settings.data_path / LOCK_FILE, token)
    keys = store.keys if isinstance(store, RedisStore) else Keys(settings.key_prefix)
    io_timeout_s = min(IO_TIMEOUT_CAP_S, settings.leader_renew_s / 2)
    client = Endpoint.of(settings).client(
        decode_responses=True,
        socket_timeout=io_timeout_s,
        socket_connect_timeout=io_timeout_s,
        retry=Retry(NoBackoff(), 1),
    )
    return RedisLeaderLock(client, keys.beat_leader, token, settings.leader_ttl_s)
