"""One supervising process per data dir: an ``flock`` on ``state/up.lock`` with its pid inside.

``tdauto up`` and ``AutomationSystems.start()`` take it before they start any pool, so a
second ``up`` on the same data dir is refused at once instead of starting a second set of
workers beside the first, and ``tdauto backup restore`` can tell that the store is in use.
The kernel drops an ``flock`` when its holder dies, so the lock of a killed ``up`` is simply
taken by the next one. The file also names the pool processes its holder started (pid and
start time), so the next holder kills any that a killed holder left behind, and never a
process that merely reuses one of their pids. The file is rewritten in place (never renamed,
which would split the lock from its name), the new text first and the old tail cut after, so
a reader sees the old text or the new one, never an empty file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

import psutil

from tdauto.errors import TdautoError

LOCK_NAME = "up.lock"
log = logging.getLogger(__name__)


class AlreadyRunning(TdautoError):
    """Another process supervises this data dir."""

    def __init__(self, data_dir: Path, pid: int | None) -> None:
        self.pid = pid
        who = f"pid {pid}" if pid else "pid unknown"
        super().__init__(f"tdauto up is already running for {data_dir} ({who})")


def lock_path(data_dir: Path) -> Path:
    """The lock file of ``data_dir``."""
    return data_dir / "state" / LOCK_NAME


def _read(path: Path) -> dict[str, Any]:
    """The lock file's record ({} when there is none): a reader racing a holder's first
    write may see an empty file, so it looks again a few times."""
    for _ in range(5):
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            time.sleep(0.01)
            continue
        return value if isinstance(value, dict) else {}
    return {}


def holder(data_dir: Path) -> int | None:
    """The pid holding ``data_dir``'s lock, or None when no live process holds it."""
    path = lock_path(data_dir)
    if not path.exists():
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = _read(path).get("pid")
        return pid if isinstance(pid, int) else 0
    finally:
        os.close(fd)
    return None


class UpLock:
    """The data dir's lock, held from :meth:`acquire` until :meth:`release` or death."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = lock_path(data_dir)
        self._fd: int | None = None
        self._pools: dict[str, dict[str, float]] = {}

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> list[int]:
        """Take the lock or raise :class:`AlreadyRunning`. Returns the pids of the pools a
        killed earlier holder left running, which it has killed (SIGKILL to their groups).
        A few short retries: :func:`holder`'s probe holds the lock for an instant."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        for attempt in range(10):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt == 9:
                    os.close(fd)
                    pid = _read(self.path).get("pid")
                    known = pid if isinstance(pid, int) and pid > 0 else None
                    raise AlreadyRunning(self.data_dir, known) from None
                time.sleep(0.02)
        left = _kill_orphans(_read(self.path))
        self._fd = fd
        self._write()
        return left

    def record(self, name: str, pid: int | None) -> None:
        """Note (or, with None, forget) a pool process the holder started. A write that
        fails (a full disk) is logged: the lock still holds, only the orphan list is stale."""
        if pid is None:
            self._pools.pop(name, None)
        else:
            with contextlib.suppress(psutil.Error):
                self._pools[name] = {"pid": pid, "created": psutil.Process(pid).create_time()}
        if self.held:
            try:
                self._write()
            except OSError as exc:
                log.warning("could not update %s: %s", self.path, exc)

    def _write(self) -> None:
        assert self._fd is not None
        body = json.dumps({"pid": os.getpid(), "pools": self._pools}).encode()
        os.pwrite(self._fd, body, 0)
        os.ftruncate(self._fd, len(body))

    def release(self) -> None:
        """Let go of the lock; the file is emptied first, so nobody reads a stale pid."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        os.close(self._fd)
        self._fd = None


def _kill_orphans(previous: dict[str, Any]) -> list[int]:
    """SIGKILL the process groups of the pools a dead holder's file lists, if those
    processes still run (same pid and the same start time)."""
    pools = previous.get("pools")
    stopped: list[int] = []
    if not isinstance(pools, dict):
        return stopped
    for child in pools.values():
        try:
            pid, created = int(child["pid"]), float(child["created"])
            if abs(psutil.Process(pid).create_time() - created) > 0.01:
                continue  # the pid was reused by another process
            os.killpg(pid, signal.SIGKILL)
        except (KeyError, TypeError, ValueError, psutil.Error, OSError):
            continue
        stopped.append(pid)
    return stopped
