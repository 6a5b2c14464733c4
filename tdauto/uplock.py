"""One supervising process per data dir: an ``flock`` on ``state/up.lock`` with its pid inside.

``tdauto up`` and ``AutomationSystems.start()`` take it before they start any pool, so a
second ``up`` on the same data dir is refused at once instead of starting a second set of
workers beside the first, and ``tdauto backup restore`` can tell that the store is in use.
The kernel drops an ``flock`` when its holder dies, so the lock of a killed ``up`` is simply
taken by the next one. The file also names the pool processes its holder started (pid and
start time), so the next holder stops any that a killed holder left behind, and never a
process that merely reuses one of their pids.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
from pathlib import Path
from typing import Any

import psutil

from tdauto.errors import TdautoError

LOCK_NAME = "up.lock"


class AlreadyRunning(TdautoError):
    """Another process supervises this data dir."""

    def __init__(self, data_dir: Path, pid: int | None) -> None:
        self.pid = pid
        who = f"pid {pid}" if pid else "pid unknown"
        super().__init__(f"tdauto up is already running for {data_dir} ({who})")


def lock_path(data_dir: Path) -> Path:
    return data_dir / "state" / LOCK_NAME


def _read(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


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
        self._children: dict[str, dict[str, float]] = {}

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> list[int]:
        """Take the lock or raise :class:`AlreadyRunning`. Returns the pids of processes a
        killed earlier holder left running, which it has stopped (SIGKILL to their groups)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            pid = _read(self.path).get("pid")
            raise AlreadyRunning(self.data_dir, pid if isinstance(pid, int) else None) from None
        left = _stop_orphans(_read(self.path))
        self._fd = fd
        self._write()
        return left

    def record(self, name: str, pid: int | None) -> None:
        """Note (or, with None, forget) a child process the holder started."""
        if pid is None:
            self._children.pop(name, None)
        else:
            with contextlib.suppress(psutil.Error):
                self._children[name] = {"pid": pid, "created": psutil.Process(pid).create_time()}
        if self.held:
            self._write()

    def _write(self) -> None:
        assert self._fd is not None
        body = json.dumps({"pid": os.getpid(), "children": self._children}).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, body, 0)

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        os.close(self._fd)
        self._fd = None


def _stop_orphans(previous: dict[str, Any]) -> list[int]:
    """SIGKILL the process groups a dead holder's file lists, if those processes still run
    (same pid and the same start time)."""
    children = previous.get("children")
    stopped: list[int] = []
    if not isinstance(children, dict):
        return stopped
    for child in children.values():
        try:
            pid, created = int(child["pid"]), float(child["created"])
            if abs(psutil.Process(pid).create_time() - created) > 0.01:
                continue  # the pid was reused by another process
            os.killpg(pid, signal.SIGKILL)
        except (KeyError, TypeError, ValueError, psutil.Error, OSError):
            continue
        stopped.append(pid)
    return stopped
