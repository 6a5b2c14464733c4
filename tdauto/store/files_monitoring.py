"""The monitoring part of ``FileStore``: rollups, histories, cooldowns and retention.

Layout (under the data dir)::

    metrics/rollups/<tier>-<start_ts>.json   one rollup bucket {field: number}
    metrics/rollups/all.json                 the same counters since the beginning
    metrics/rollups/latest.json              {field: [ts, value]}
    metrics/rollups/journal.jsonl            rollup deltas not yet folded into the above
    metrics/rollups/fold.seq                 the number of the last fold
    state/history/<kind>.jsonl               JSON lines, oldest first
    state/cooldowns.json                     {key: expires_ts}
    state/monitoring.lock                    lock of all of the above

A rollup is one line appended to the journal under one lock of its own, so recording an
execution's end never waits on the store lock that task edits and the scheduler take, and
costs no file rewrite. The journal is folded into the bucket files, a few hundred events at
a time, when it reaches ``FOLD_BYTES`` and before any read: it is renamed ``fold-<n>.jsonl``,
its sums applied to each bucket file, which then records ``n`` so that a fold cut short by a
crash is finished by the next one without counting anything twice. Kept apart from
``files.py`` (one concern per module); ``FileStore`` mixes it in and this module reuses its
atomic-write and lock helpers.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tdauto.models import TERMINAL_STATUSES, ExecutionStatus
from tdauto.private import opener, private_dir
from tdauto.store import files as _files
from tdauto.store import records
from tdauto.store.backend import ROLLUP_TIERS, RollupDelta
from tdauto.store.journal import journal_entry, readable

_TERMINAL = frozenset(s.value for s in TERMINAL_STATUSES)
log = logging.getLogger(__name__)
FOLD_BYTES = 64 * 1024
"""A journal this long is folded by the write that makes it so (about 200 run ends)."""
FOLD_MARK = "_fold"
"""A bucket file's field: the newest fold applied to it (not a rollup field)."""


def _bucket_file(root: Path, bucket_id: str) -> Path:
    return root / f"{bucket_id.replace(':', '-')}.json"


class FileMonitoring:
    """Mixed into ``FileStore``; relies on its ``root`` and execution/log paths."""

    root: Path

    # provided by FileStore: where an execution's record, log and lock stripe live
    _execution_path: Callable[[str], Path]
    _log_path: Callable[[str], Path]
    _stripe: Callable[[str], Path]

    @property
    def _rollup_dir(self) -> Path:
        path = private_dir(self.root / "metrics" / "rollups")
        return path

    @property
    def _monitoring_lock(self) -> Path:
        return self.root / "state" / "monitoring.lock"

    def _json(self, path: Path, default: Any) -> Any:
        raw = _files._read_text(path)
        return json.loads(raw) if raw else default

    # --- rollups -------------------------------------------------------------------------------

    def add_rollup(self, delta: RollupDelta) -> None:
        line = (journal_entry(delta, "") + "\n").encode()
        with _files._os_errors("recording a rollup"), _files._flock(self._monitoring_lock):
            fd = os.open(
                self._rollup_dir / "journal.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600
            )
            try:
                os.write(fd, line)
                size = os.fstat(fd).st_size
            finally:
                os.close(fd)
            if size >= FOLD_BYTES:
                self._fold()

    def _fold(self) -> None:
        """Fold the journal into the bucket files (the monitoring lock held): first what a
        crashed fold left, then the journal itself."""
        folder = self._rollup_dir
        for left in sorted(folder.glob("fold-*.jsonl")):
            self._apply_fold(left)
        journal = folder / "journal.jsonl"
        if not journal.exists():
            return
        # numbered by a counter, not the clock, which may step back
        sequence = folder / "fold.seq"
        generation = int(_files._read_text(sequence) or 0) + 1
        _files._write_atomic(sequence, str(generation))
        target = folder / f"fold-{generation:012d}.jsonl"
        os.replace(journal, target)
        self._apply_fold(target)

    def _apply_fold(self, path: Path) -> None:
        generation = int(path.stem.partition("-")[2])
        sums: dict[str, RollupDelta] = {}
        latest: dict[str, tuple[float, str]] = {}
        for delta in map(readable, path.read_bytes().splitlines()):
            if delta is None:
                continue
            for of in delta.buckets:
                total = sums.setdefault(of.id, RollupDelta([]))
                delta.add_to(total.incr, total.maxima, total.minima)
            for name, (ts, text) in delta.latest.items():
                if name not in latest or latest[name][0] <= ts:
                    latest[name] = (ts, text)
        folder = self._rollup_dir
        for bucket_id, total in sums.items():
            bucket = _bucket_file(folder, bucket_id)
            data: dict[str, float] = self._json(bucket, {})
            if data.get(FOLD_MARK, 0) >= generation:
                continue  # applied before a crash cut that fold short
            total.add_to(data, data, data)
            data[FOLD_MARK] = generation
            _files._write_atomic(bucket, json.dumps(data))
        if latest:
            bucket = folder / "latest.json"
            known: dict[str, list[Any]] = self._json(bucket, {})
            for name, (ts, text) in latest.items():  # newest wins: applying twice is harmless
                if name not in known or known[name][0] <= ts:
                    known[name] = [ts, text]
            _files._write_atomic(bucket, json.dumps(known))
        os.unlink(path)

    def _folded(self) -> None:
        """Fold before a read, so what is read is never behind; a fold that fails is
        logged and the buckets are read as they are."""
        try:
            with _files._flock(self._monitoring_lock):
                self._fold()
        except Exception:
            log.warning("could not fold the rollup journal", exc_info=True)

    def read_rollups(self, bucket_ids: list[str]) -> list[dict[str, float]]:
        self._folded()
        folder = self._rollup_dir
        with _files._os_errors("reading rollups"):
            buckets = [self._json(_bucket_file(folder, b), {}) for b in bucket_ids]
        for bucket in buckets:
            bucket.pop(FOLD_MARK, None)
        return buckets

    def rollup_latest(self) -> dict[str, tuple[float, str]]:
        self._folded()
        with _files._os_errors("reading rollups"):
            raw = self._json(self._rollup_dir / "latest.json", {})
        return {name: (float(ts), str(value)) for name, (ts, value) in raw.items()}

    def purge_rollups(self, cutoffs: dict[str, float]) -> int:
        """A bucket file is named ``<tier>-<start_ts>``; its end is the start of the next, so
        the start plus the tier's width is compared (``cutoffs`` hold end times)."""
        removed = 0
        with _files._os_errors("purging rollups"), _files._flock(self._monitoring_lock):
            self._fold()
            for entry in os.scandir(self._rollup_dir):
                tier, dash, start = entry.name.removesuffix(".json").partition("-")
                if not dash or tier not in cutoffs or not start.isdigit():
                    continue
                if int(start) + ROLLUP_TIERS[tier] <= cutoffs[tier]:
                    os.unlink(entry.path)
                    removed += 1
        return removed

    # --- in-flight counts ----------------------------------------------------------------------

    def count_by_status(self, statuses: list[ExecutionStatus]) -> dict[str, int]:
        """Local mode has no status index: the records are scanned, but a record whose file
        did not change since the last call (same mtime and size) is not read again."""
        wanted = {ExecutionStatus(s).value for s in statuses}
        cache: dict[str, tuple[int, int, str]] = getattr(self, "_status_cache", {})
        fresh: dict[str, tuple[int, int, str]] = {}
        counts = dict.fromkeys(sorted(wanted), 0)
        with _files._os_errors("counting executions"):
            for entry in os.scandir(self.root / "executions"):
                if not entry.name.endswith(".json"):
                    continue
                try:
                    st = entry.stat()
                except FileNotFoundError:
                    continue
                known = cache.get(entry.name)
                if known is not None and known[:2] == (st.st_mtime_ns, st.st_size):
                    status = known[2]
                else:
                    raw = _files._read_text(Path(entry.path))
                    if raw is None:
                        continue
                    status = records.raw_status(json.loads(raw))
                fresh[entry.name] = (st.st_mtime_ns, st.st_size, status)
                if status in counts:
                    counts[status] += 1
        self._status_cache = fresh
        return counts

    # --- cooldowns and histories ---------------------------------------------------------------

    def acquire_cooldown(self, key: str, ttl_s: float) -> bool:
        path = self.root / "state" / "cooldowns.json"
        with _files._os_errors(f"taking cooldown {key}"), _files._flock(self._monitoring_lock):
            now = time.time()
            held = {k: v for k, v in self._json(path, {}).items() if v > now}
            if key in held:
                return False
            held[key] = now + ttl_s
            _files._write_atomic(path, json.dumps(held))
        return True

    def _history_path(self, kind: str) -> Path:
        folder = private_dir(self.root / "state" / "history")
        return folder / f"{quote(kind, safe='')}.jsonl"

    def _history_lines(self, path: Path) -> list[str]:
        raw = _files._read_text(path)
        return [line for line in (raw or "").splitlines() if line.strip()]

    def append_history(self, kind: str, record: dict[str, Any], keep: int) -> None:
        """Appends a line; once the file holds twice ``keep`` it is cut back to ``keep``."""
        path = self._history_path(kind)
        line = json.dumps(record, default=str) + "\n"
        with _files._os_errors(f"recording {kind} history"), _files._flock(self._monitoring_lock):
            with open(path, "a", encoding="utf-8", opener=opener) as handle:
                handle.write(line)
            if path.stat().st_size > 4096:
                lines = self._history_lines(path)
                if len(lines) > 2 * max(keep, 1):
                    _files._write_atomic(path, "\n".join(lines[-keep:]) + "\n")

    def history(self, kind: str, limit: int | None = 100) -> list[dict[str, Any]]:
        with _files._os_errors(f"reading {kind} history"):
            lines = self._history_lines(self._history_path(kind))
        chosen = lines if limit is None else lines[-max(limit, 1) :]
        return [json.loads(line) for line in reversed(chosen)]

    def purge_history(self, kind: str, before_ts: float) -> int:
        path = self._history_path(kind)
        with _files._os_errors(f"purging {kind} history"), _files._flock(self._monitoring_lock):
            lines = self._history_lines(path)
            kept = [ln for ln in lines if float(json.loads(ln).get("ts", 0)) >= before_ts]
            if len(kept) != len(lines):
                _files._write_atomic(path, "".join(ln + "\n" for ln in kept))
        return len(lines) - len(kept)

    # --- retention -----------------------------------------------------------------------------

    def purge_executions(self, before_ts: float, limit: int = 10_000) -> list[str]:
        """Scans ``executions/`` (a periodic job may), deleting each old terminal record
        under its stripe lock so no update lands half-way."""
        removed: list[str] = []
        with _files._os_errors("purging executions"):
            for entry in os.scandir(self.root / "executions"):
                if len(removed) >= limit:
                    break
                if not entry.name.endswith(".json"):
                    continue
                raw = _files._read_text(Path(entry.path))
                if raw is None:
                    continue
                data = json.loads(raw)
                if records.raw_status(data) not in _TERMINAL:
                    continue
                created = data.get("created_at")
                if created is None or datetime.fromisoformat(created).timestamp() >= before_ts:
                    continue
                execution_id = str(data["id"])
                with _files._flock(self._stripe(execution_id)):
                    self._execution_path(execution_id).unlink(missing_ok=True)
                    self._log_path(execution_id).unlink(missing_ok=True)
                removed.append(execution_id)
        return removed

    def purge_logs(self, before_ts: float, limit: int = 10_000) -> int:
        """A log last written before ``before_ts`` belongs to an execution created before it;
        its file time says so without reading the record. Worker logs in sub-folders stay."""
        removed = 0
        with _files._os_errors("purging logs"):
            for entry in os.scandir(self.root / "logs"):
                if removed >= limit:
                    break
                is_log = entry.is_file() and entry.name.endswith(".log")
                if is_log and entry.stat().st_mtime < before_ts:
                    os.unlink(entry.path)
                    removed += 1
        return removed
