"""Per-action loggers whose records land in the execution's log.

Each action gets its own ``logging.Logger`` (a child of ``tdauto.run``) with a handler that
appends formatted lines to the store (so ``tdauto exec logs ID`` works from any host) and, in
distributed mode, also to ``logs/<execution_id>.log`` on the host that ran it.

Its ``output`` child (where ``ctx.run`` logs a command's output) writes to the same handler
and does not propagate: the worker's own log (``logs/processes/worker-<pool>.log``) gets the
action's messages but never copies what its commands print, which is bounded only in the
execution's log.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

from tdauto.engine.runtime import Runtime
from tdauto.models import Execution
from tdauto.private import opener, private_dir
from tdauto.redact import redact_text

_FORMAT = logging.Formatter(
    "%(asctime)s %(levelname)s [%(action)s] %(message)s", datefmt="%Y-%m-%dT%H:%M:%S%z"
)


class _StoreHandler(logging.Handler):
    """Buffers an action's lines and appends them to the store at most once a second (and
    when the action ends), so a quick action costs one write for its whole log."""

    FLUSH_S = 1.0

    def __init__(self, rt: Runtime, execution_id: str, label: str) -> None:
        super().__init__()
        self._rt = rt
        self._execution_id = execution_id
        self._label = label
        self._buffer: list[str] = []
        self._last_flush = time.monotonic()
        self._file: Path | None = None
        if not rt.settings.local_mode:  # its folder is made by the first write
            self._file = rt.settings.data_path / "logs" / f"{execution_id}.log"

    def emit(self, record: logging.LogRecord) -> None:
        try:
            record.action = self._label
            line = redact_text(_FORMAT.format(record)) + "\n"
            with self.lock or contextlib.nullcontext():
                self._buffer.append(line)
            if time.monotonic() - self._last_flush >= self.FLUSH_S:
                self.flush()
        except Exception:  # a log write must never fail the action
            self.handleError(record)

    def flush(self) -> None:
        self.take(to_store=True)

    def take(self, to_store: bool) -> str:
        """Write the buffered lines to the host's log file and (``to_store``) the store;
        returns them, so the last lines can travel with the action's final record write."""
        with self.lock or contextlib.nullcontext():
            text, self._buffer = "".join(self._buffer), []
            self._last_flush = time.monotonic()
        if not text:
            return ""
        try:
            if to_store:
                self._rt.store.append_log(self._execution_id, text)
            if self._file is not None:
                private_dir(self._file.parent)
                with open(self._file, "a", encoding="utf-8", opener=opener) as fh:
                    fh.write(text)
        except Exception:  # a log write must never fail the action
            logging.getLogger(__name__).warning("could not write the log of %s", self._label)
        return text


def action_logger(
    rt: Runtime, ex: Execution, index: int
) -> tuple[logging.Logger, Callable[[bool], str]]:
    """A logger for action ``index`` of ``ex`` and ``close(to_store)``, which detaches its
    handler and returns the lines not yet in the store when ``to_store`` is False (the caller
    then writes them with the action's final record)."""
    run = ex.actions[index]
    label = f"{index}:{run.type}"
    logger = logging.getLogger(f"tdauto.run.{ex.id}.{index}")
    parent = logging.getLogger("tdauto.run")
    if parent.level != logging.INFO:
        # set once on the parent: a level set on every run's own logger clears the logging
        # module's level cache of every logger in the process, each time (~0.2 ms a run)
        parent.setLevel(logging.INFO)
    logger.propagate = True
    handler = _StoreHandler(rt, ex.id, label)
    logger.addHandler(handler)
    output = logger.getChild("output")
    output.propagate = False  # command output: the execution's log only, not the worker's
    output.addHandler(handler)

    def close(to_store: bool = True) -> str:
        logger.removeHandler(handler)
        output.removeHandler(handler)
        pending = handler.take(to_store)
        handler.close()
        logging.Logger.manager.loggerDict.pop(logger.name, None)
        logging.Logger.manager.loggerDict.pop(output.name, None)
        return "" if to_store else pending

    return logger, close
