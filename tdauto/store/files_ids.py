"""``FileStore``'s id prefixes: a glob of ``tasks/`` or ``executions/`` on the file names,
which are the ids percent-encoded, so no record is read to find the matches."""

from __future__ import annotations

import glob
import itertools
from pathlib import Path
from urllib.parse import quote, unquote

from tdauto.store.ids import IdPrefixes


class FileIds(IdPrefixes):
    root: Path

    def task_ids_starting(self, prefix: str, limit: int) -> list[str]:
        return _starting(self.root / "tasks", prefix, limit)

    def execution_ids_starting(self, prefix: str, limit: int) -> list[str]:
        return _starting(self.root / "executions", prefix, limit)


def _starting(folder: Path, prefix: str, limit: int) -> list[str]:
    pattern = f"{glob.escape(quote(prefix, safe=''))}*.json"
    found = (unquote(path.name.removesuffix(".json")) for path in folder.glob(pattern))
    return list(itertools.islice(found, limit))
