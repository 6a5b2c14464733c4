"""Console output that never raises into a shutdown.

``tdauto up | tee up.log``: the terminal's Ctrl-C reaches ``up`` and ``tee`` together, and
``tee`` usually dies first, so every line ``up`` prints while it stops its pools goes to a
broken pipe. A write that fails there must not skip the shutdown (docs/architecture.md,
"Processes"). :class:`PipeSafe` drops output once its stream fails and points the descriptor
at /dev/null, so later writes by anything in the process (logging, rich, the interpreter's
final flush) succeed quietly too.
"""

from __future__ import annotations

import contextlib
import io
import os
from typing import IO, TextIO, cast


class PipeSafe(io.TextIOBase):
    """A text stream that drops its output once writing to it fails (EPIPE, EIO, ENOSPC, a
    closed stream). Text its encoding cannot hold is written with replacements."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.broken = False

    @property
    def encoding(self) -> str:  # type: ignore[override]
        """The wrapped stream's, so rich picks box characters the console can show."""
        return getattr(self._stream, "encoding", None) or "utf-8"

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                self._write(text)
            except (OSError, ValueError) as exc:
                self._break(exc)
        return len(text)

    def _write(self, text: str) -> None:
        try:
            self._stream.write(text)
        except UnicodeEncodeError:
            self._stream.write(text.encode(self.encoding, "replace").decode(self.encoding))
        self._stream.flush()

    def flush(self) -> None:
        if not self.broken:
            try:
                self._stream.flush()
            except (OSError, ValueError) as exc:
                self._break(exc)

    def isatty(self) -> bool:
        return not self.broken and self._stream.isatty()

    def _break(self, exc: BaseException) -> None:
        if isinstance(exc, ValueError) and not self._stream.closed:
            raise exc  # not a stream failure: a bug to see, not to hide
        self.broken = True
        with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)


def pipe_safe(stream: TextIO) -> IO[str]:
    """``stream`` behind a :class:`PipeSafe`, typed as the file a ``rich`` console takes."""
    return cast(IO[str], PipeSafe(stream))
