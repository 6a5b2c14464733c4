"""A bounded reader of a command's output: the head and the tail within a cap, the rest
drained and counted.

A command may write gigabytes (a runaway ``yes``, a verbose dump). Copying every line into
the action's log costs time and disk long after the log's cap (``TDAUTO_LOG_MAX_BYTES``)
stops keeping them, and a child blocked on a full pipe never ends. So the output is read in
large chunks; the first lines are logged as they come, while the head has room; after that,
only the last bytes are kept in a buffer that is trimmed as it grows, and at the end the
tail's lines are logged after one line saying how much was dropped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import IO

CHUNK = 1 << 20  # bytes read at a time
LINE_OVERHEAD = 64  # what the log adds to a line (time, level, action, program), about


def dropped_note(count: int) -> str:
    """The line that stands for the output that was not kept."""
    return f"[{count} bytes of output dropped]"


class BoundedOutput:
    """Keeps at most ``cap`` bytes of a stream (each line counted with ``LINE_OVERHEAD``):
    lines of the first half go to ``emit`` as they arrive, the last half's at ``finish()``."""

    def __init__(self, cap: int, emit: Callable[[str], None]) -> None:
        self._head_room = cap // 2
        self._tail_room = cap - self._head_room
        self._emit = emit
        self._lines: list[str] = []
        self._pending = bytearray()  # the head's line not ended yet
        self._tail = bytearray()
        self._in_tail = False
        self.total = 0  # bytes read
        self.kept = 0  # bytes of output kept (head and tail lines)
        self.dropped = 0  # bytes read and not kept
        self._lock = threading.Lock()  # a reader may outlive the command (a grandchild's pipe)
        self._done = False

    def feed(self, data: bytes) -> None:
        """Take the next piece of the stream (ignored once finished)."""
        with self._lock:
            if not self._done:
                self._feed(data)

    def finish(self) -> str:
        """Log what is left (the dropped note, then the tail) and return the kept text."""
        with self._lock:
            self._done = True
            return self._finish()

    def _feed(self, data: bytes) -> None:
        self.total += len(data)
        if not self._in_tail:
            self._pending += data
            start = 0
            while (end := self._pending.find(b"\n", start)) >= 0:
                if not self._fits(end + 1 - start):
                    self._in_tail = True
                    break
                self._keep(bytes(self._pending[start:end]), end + 1 - start)
                start = end + 1
            del self._pending[:start]
            if not self._in_tail and not self._fits(len(self._pending)):
                self._in_tail = True  # a line longer than the head's room
            if not self._in_tail:
                return
            data, self._pending = bytes(self._pending), bytearray()
        self._tail += data
        if len(self._tail) > 2 * self._tail_room:
            del self._tail[: len(self._tail) - self._tail_room]

    def _finish(self) -> str:
        if not self._in_tail:
            if self._pending:
                self._keep(bytes(self._pending), len(self._pending))
            return "\n".join(self._lines)
        tail = bytes(self._tail[-self._tail_room :]) if self._tail_room else b""
        if len(tail) < len(self._tail) or not self._tail_room:
            cut = tail.find(b"\n")  # start the tail at a whole line
            tail = tail[cut + 1 :] if cut >= 0 else b""
        lines = tail.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        room, kept = self._tail_room, []
        for line in reversed(lines):
            room -= len(line) + 1 + LINE_OVERHEAD
            if room < 0:
                break
            kept.append(line)
        kept.reverse()
        tail_bytes = sum(len(line) + 1 for line in kept)
        self.dropped = self.total - self.kept - tail_bytes
        if self.dropped > 0:
            note = dropped_note(self.dropped)
            self._emit(note)
            self._lines.append(note)
        for line in kept:
            self._keep(line, len(line) + 1)
        return "\n".join(self._lines)

    def _fits(self, size: int) -> bool:
        return self._used + size + LINE_OVERHEAD <= self._head_room

    @property
    def _used(self) -> int:
        return self.kept + LINE_OVERHEAD * len(self._lines)

    def _keep(self, raw: bytes, size: int) -> None:
        line = raw.decode("utf-8", "replace")
        self.kept += size
        self._lines.append(line)
        self._emit(line)


def drain(stream: IO[bytes], output: BoundedOutput) -> None:
    """Read ``stream`` to its end into ``output``, a chunk at a time."""
    read = getattr(stream, "read1", stream.read)
    while chunk := read(CHUNK):
        output.feed(chunk)
