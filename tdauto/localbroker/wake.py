"""Wake-ups between the broker's processes over Unix datagram sockets in ``wake/``."""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import select
import socket
import time
from pathlib import Path

from tdauto.localbroker.storage import private_dir

log = logging.getLogger(__name__)
_counter = itertools.count()
_bases: dict[tuple[int, str], str] = {}  # (pid, folder) -> its address prefix, one fd each


class Waker:
    """Wake-ups between processes: a consumer binds ``wake/<pid>-<n>.sock`` and waits on it;
    a publisher sends one byte to every socket there, dropping those nobody listens on."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._sock: socket.socket | None = None
        self._name = ""
        self._pid = 0
        self._failed = False

    def _address(self, name: str) -> str:
        """The socket's address; through ``/proc/self/fd`` when the path is too long for
        ``sun_path`` (108 bytes), as a pytest tmp dir may be (one descriptor per process and
        folder, however many connections)."""
        key = (os.getpid(), str(self.folder))
        base = _bases.get(key)
        if base is None:
            base = str(self.folder)
            if len(base) > 80 and os.path.isdir("/proc/self/fd"):
                base = f"/proc/self/fd/{os.open(self.folder, os.O_PATH | os.O_DIRECTORY)}"
            _bases[key] = base
        return f"{base}/{name}"

    def listen(self) -> socket.socket | None:
        """This process's socket, bound on first use (None if the folder refuses it)."""
        if self._pid == os.getpid() and (self._sock is not None or self._failed):
            return self._sock
        self._pid, self._failed = os.getpid(), False
        name = f"{os.getpid()}-{next(_counter)}.sock"
        try:
            private_dir(self.folder)
            with contextlib.suppress(FileNotFoundError):
                (self.folder / name).unlink()
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.setblocking(False)
            sock.bind(self._address(name))
            os.chmod(self.folder / name, 0o600)
        except OSError as exc:
            log.error("local broker: no wake-up socket in %s (%s); polling instead", self.folder,
                      exc)
            self._failed = True
            return None
        self._sock, self._name = sock, name
        return sock

    def clear(self) -> None:
        """Drop pending wake-ups (before looking at the queues, so none after is missed)."""
        sock = self.listen()
        with contextlib.suppress(OSError):
            while sock is not None:
                sock.recv(64)

    def wait(self, seconds: float) -> None:
        sock = self.listen()
        if sock is None:
            time.sleep(seconds)
        else:
            select.select([sock], [], [], seconds)

    def _send(self, names: list[str]) -> None:
        """One byte to each socket in ``names``, from a sender of its own: a datagram is
        charged to its sender's buffer until it is read, so with one long-lived sender,
        sockets nobody reads (a client that pinged once and kept its connection) would fill
        that buffer and every later wake-up would be dropped. A receiver whose queue is
        full has wake-ups pending already."""
        sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sender.setblocking(False)
        with sender:
            for name in names:
                try:
                    sender.sendto(b"\0", self._address(name))
                except (ConnectionRefusedError, FileNotFoundError):  # its process is gone
                    with contextlib.suppress(OSError):
                        (self.folder / name).unlink()
                except OSError:
                    pass

    def wake_all(self) -> None:
        try:
            names = [e.name for e in os.scandir(self.folder) if e.name.endswith(".sock")]
        except OSError:
            return
        self._send(names)

    def wake_self(self) -> None:
        if self._sock is not None and self._pid == os.getpid():
            self._send([self._name])

    def close(self) -> None:
        if self._sock is not None and self._pid == os.getpid():
            self._sock.close()
            with contextlib.suppress(OSError):
                (self.folder / self._name).unlink()
        self._sock = None
