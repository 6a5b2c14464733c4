"""Per-action loggers whose records land in the execution's log.

Each action gets its own ``logging.Logger`` (a child of ``tdauto.run``) with a handler that
appends formatted lines to the store (so ``tdauto exec logs ID`` works from any host) and, in
distributed mode, also to ``logs/<execution_id>.log`` on the host that ran it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from tdauto.engine.redact import redact_text
from tdauto.engine.runtime import Runtime
from tdauto.models import Execution

_FORMAT = logging.Formatter(
    "%(asctime)s %(levelname)s [%(action)s] %(message)s", datefmt="%Y-%m-%dT%H:%M:%S%z"
)


class _StoreHandler(logging.Handler):
    def __init__(self, rt: Runtime, execution_id: str, label: str) -> None:
        super().__init__()
        self._rt = rt
        self._execution_id = execution_id
        self._label = label
        self._file: Path | None = None
        if not rt.settings.local_mode:
            self._file = rt.settings.data_path / "logs" / f"{execution_id}.log"
            self._file.parent.mkdir(parents=True, exist_ok=True)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            record.action = self._label
            line = redact_text(_FORMAT.format(record)) + "\n"
            self._rt.store.append_log(self._execution_id, line)
            if self._file is not None:
                with self._file.open("a", encoding="utf-8") as fh:
                    fh.write(line)
        except Exception:  # a log write must never fail the action
            self.handleError(record)


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
