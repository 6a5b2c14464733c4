"""Per-action loggers whose records land in the execution's log.

Each action gets its own ``logging.Logger`` (a child of ``tdauto.run``) with a handler that
appends formatted lines to the store (so ``tdauto exec logs ID`` works from any host) and, in
distributed mode, also to ``logs/<execution_id>.log`` on the host that ran it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

from tdauto.engine.redact import redact_text
from tdauto.engine.runtime import Runtime
from tdauto.models import Execution

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
        if not rt.settings.local_mode:
            self._file = rt.settings.data_path / "logs" / f"{execution_id}.log"
            self._file.parent.mkdir(parents=True, exist_ok=True)

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
        with self.lock or contextlib.nullcontext():
            text, self._buffer = "".join(self._buffer), []
            self._last_flush = time.monotonic()
        if not text:
            return
        try:
            self._rt.store.append_log(self._execution_id, text)
            if self._file is not None:
                with self._file.open("a", encoding="utf-8") as fh:
                    fh.write(text)
        except Exception:  # a log write must never fail the action
            logging.getLogger(__name__).warning("could not write the log of %s", self._label)

    def close(self) -> None:
        self.flush()
        super().close()


def action_logger(
    rt: Runtime, ex: Execution, index: int
) -> tuple[logging.Logger, Callable[[], None]]:
    """A logger for action ``index`` of ``ex`` and a function that detaches its handler."""
    run = ex.actions[index]
    label = f"{index}:{run.type}"
    logger = logging.getLogger(f"tdauto.run.{ex.id}.{index}")
    logger.setLevel(logging.INFO)
    logger.propagate = True
    handler = _StoreHandler(rt, ex.id, label)
    logger.addHandler(handler)

    def close() -> None:
        logger.removeHandler(handler)
        handler.close()
        logging.Logger.manager.loggerDict.pop(logger.name, None)

    return logger, close
