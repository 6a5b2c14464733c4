"""Restoring a store backup without harm: checked first, refused while in use, told in full.

A store restore replaces every task and execution of a live store, so it is split in three
steps that ``tdauto backup restore`` (and any later API) call in order:

1. :func:`plan_store_restore` checks everything and writes nothing: the checksum, that the
   file is a store snapshot of this format whose records validate, and ``dest``. It counts
   what the backup holds against what it would replace, for the confirmation.
2. :func:`check_not_in_use` refuses while a tdauto process holds the target: the data dir's
   lock (``tdauto.uplock``, held by ``tdauto up`` and ``start()``) or, in Redis mode, any
   worker answering a ping. A running system would keep writing runs the restore deletes.
3. :func:`apply_store_restore` checks 2 again, then restores into the store, or into a
   ``FileStore`` at ``dest`` (the live store is then not touched). Runs in flight in the
   backup come back ended (``tdauto.store.restored``).

See docs/architecture.md (Storage) and docs/process-maintenance.md (Restore).
"""

from __future__ import annotations

import gzip
import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from tdauto.errors import ActionError, InvalidInput, StoreError, TdautoError
from tdauto.models import ExecutionStatus
from tdauto.redact import redact_text
from tdauto.store import open_store, records, restored
from tdauto.store.backend import SNAPSHOT_FORMAT
from tdauto.store.files import FileStore
from tdauto.uplock import holder

if TYPE_CHECKING:
    from celery import Celery

    from tdauto.settings import Settings
    from tdauto.store.backend import Store

PING_TIMEOUT_S = 1.0
# A data dir has these folders (FileStore creates them); a non-empty folder without them is
# someone else's, and restoring into it needs --overwrite.
_DATA_DIR_MARKS = ("state", "tasks", "executions")


class StoreInUse(TdautoError):
    """A tdauto process holds the store a restore would replace."""


@dataclass(frozen=True)
class StorePlan:
    """What a store restore would do; made before anything is written."""

    archive: Path
    sha256: str
    snapshot: dict[str, Any]
    target: str  # "the store at DIR" or "the Redis at URL (prefix P)", for messages
    dest: Path | None  # a FileStore data dir, or None for the configured store
    tasks: int
    executions: int
    in_flight: int  # the backup's runs not ended, which come back FAILED
    live_tasks: int
    live_executions: int
    store: Store | None = None  # the configured store, when it is the target

    def summary(self) -> str:
        """One sentence for the confirmation: what is replaced by what."""
        ending = (
            f", {self.in_flight} of them in flight: they come back FAILED, "
            f"{restored.RESTORED_REASON!r}"
            if self.in_flight
            else ""
        )
        if self.dest is not None and not (self.live_tasks or self.live_executions):
            over = f"into {self.target}, which holds no tasks or executions"
        else:
            over = (
                f"over {self.target}, replacing its {self.live_tasks} tasks and "
                f"{self.live_executions} executions"
            )
        return (
            f"Restore {self.archive.name} ({self.tasks} tasks, {self.executions} executions"
            f"{ending}) {over}"
        )


def load_snapshot(archive: Path) -> dict[str, Any]:
    """The snapshot in ``archive``, validated as the store's ``restore`` will read it;
    anything else is refused with one line naming the file."""
    fix = "restore from a backup of kind store made by tdauto's backup action"
    try:
        with gzip.open(archive, "rt", encoding="utf-8") as handle:
            snapshot = json.load(handle)
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, ValueError) as exc:
        raise ActionError(
            f"{archive} is not a tdauto store snapshot (not gzipped JSON: {exc}); {fix}",
            "invalid",
        ) from None
    found = snapshot.get("format") if isinstance(snapshot, dict) else None
    if found != SNAPSHOT_FORMAT:
        hint = (
            "it was written by another tdauto version; restore it with that version"
            if isinstance(found, str) and found.startswith(SNAPSHOT_FORMAT.split("/")[0] + "/")
            else fix
        )
        raise ActionError(
            f"{archive} is not a tdauto store snapshot of this version (format {found!r}, "
            f"expected {SNAPSHOT_FORMAT!r}); {hint}",
            "invalid",
        )
    try:
        records.read_snapshot(snapshot)
    except (ValidationError, InvalidInput, TypeError, AttributeError, KeyError) as exc:
        first = str(exc).splitlines()[0]
        raise ActionError(
            f"{archive} holds records this tdauto cannot read ({first}); nothing was "
            f"restored; {fix}",
            "invalid",
        ) from None
    return snapshot


def is_data_dir(path: Path) -> bool:
    return any((path / mark).is_dir() for mark in _DATA_DIR_MARKS)


def check_dest(dest: Path, overwrite: bool) -> Path:
    """``dest`` as an absolute path, if a store may be restored there."""
    target = Path(dest).expanduser().absolute()
    if target.exists() and not target.is_dir():
        raise InvalidInput("dest", f"{target} is a file; a store backup restores to a directory")
    if target.is_dir() and any(target.iterdir()) and not is_data_dir(target) and not overwrite:
        raise InvalidInput(
            "dest",
            f"{target} is not empty and is not a tdauto data dir; pick an empty or new "
            "directory, or pass --overwrite to restore a data dir into it",
        )
    return target


def describe_target(settings: Settings, dest: Path | None) -> str:
    if dest is not None:
        return f"the data dir {dest}"
    if settings.local_mode:
        return f"the store at {settings.data_path}"
    return f"the Redis at {redact_text(str(settings.broker_url))} (prefix {settings.key_prefix})"


def _count_files(dest: Path) -> tuple[int, int]:
    """Tasks and executions of a data dir, counted without opening (creating) a store."""
    return tuple(  # type: ignore[return-value]
        sum(1 for _ in (dest / folder).glob("*.json")) if (dest / folder).is_dir() else 0
        for folder in ("tasks", "executions")
    )


def plan_store_restore(
    archive: Path,
    settings: Settings,
    store: Store | None = None,
    *,
    dest: Path | None = None,
    overwrite: bool = False,
    sha256: str | None = None,
) -> StorePlan:
    """Check a store backup and what it would replace; nothing is written.

    The target is ``dest`` (a data dir, not opened until the restore) or ``store``, by default
    the store ``settings`` name. ``sha256`` is the digest ``maintenance.verify_backup``
    returned, when the caller checked already; without it the checksum is checked here."""
    from tdauto.actions.maintenance import verify_backup

    digest = sha256 or verify_backup(archive)
    target_dir = check_dest(dest, overwrite) if dest is not None else None
    snapshot = load_snapshot(archive)
    if target_dir is not None:
        live_tasks, live_executions = _count_files(target_dir)
        store = None
    else:
        store = store or open_store(settings)
        live_tasks = len(store.list_tasks())
        live_executions = sum(store.count_by_status(list(ExecutionStatus)).values())
    raw = snapshot.get("executions", [])
    return StorePlan(
        archive=archive,
        sha256=digest,
        snapshot=snapshot,
        target=describe_target(settings, target_dir),
        dest=target_dir,
        tasks=len(snapshot.get("tasks", [])),
        executions=len(raw),
        in_flight=restored.in_flight(raw),
        live_tasks=live_tasks,
        live_executions=live_executions,
        store=store,
    )


def live_workers(app: Celery, timeout_s: float = PING_TIMEOUT_S) -> list[str]:
    """Node names of the workers that answer a ping on ``app``'s broker, sorted. A broker
    connection dropped once (a Redis just started closes a client now and then) is asked
    again; only a third failure in a row is reported."""
    nodes: set[str] = set()
    for attempt in range(3):
        try:
            replies = app.control.ping(timeout=timeout_s) or []
            break
        except Exception as exc:  # kombu's and redis-py's connection errors share no base
            if attempt < 2:
                continue
            raise StoreError(
                f"cannot ask the workers whether they run ({type(exc).__name__}: "
                f"{redact_text(str(exc))}); "
                "check TDAUTO_BROKER_URL, or pass --force to restore without asking them"
            ) from exc
    for reply in replies:
        nodes.update(reply)
    return sorted(nodes)


def holders(plan: StorePlan, settings: Settings, app: Celery | None = None) -> list[str]:
    """What holds the restore's target: ``pid N`` of the data dir's lock, and in Redis mode
    (restoring into the Redis store) ``workers a@h, b@h``. Empty when nothing does."""
    found: list[str] = []
    pid = holder(plan.dest or settings.data_path)
    if pid is not None:
        found.append(f"pid {pid}" if pid else "a process of unknown pid")
    if plan.dest is None and not settings.local_mode:
        if app is None:
            from tdauto.app import make_app  # the app's modules import the actions' modules

            app = make_app(settings)
        nodes = live_workers(app)
        if nodes:
            found.append("workers " + ", ".join(nodes))
    return found


def check_not_in_use(plan: StorePlan, settings: Settings, app: Celery | None = None) -> None:
    """Refuse (:class:`StoreInUse`) while a tdauto process holds the target."""
    found = holders(plan, settings, app)
    if found:
        workers = any(item.startswith("workers ") for item in found)
        stop = "tdauto up and the workers" if workers else "tdauto up"
        raise StoreInUse(
            f"{plan.target} is in use by tdauto ({'; '.join(found)}); stop {stop} first, "
            "or pass --force"
        )


def apply_store_restore(
    plan: StorePlan, settings: Settings, *, force: bool = False, app: Celery | None = None
) -> dict[str, Any]:
    """Restore the planned snapshot into the planned store, or a FileStore at ``plan.dest``.

    Unless ``force``, :func:`check_not_in_use` is asked again first: the question between
    plan and restore can last long enough for a ``tdauto up`` to start."""
    if not force:
        check_not_in_use(plan, settings, app)
    if plan.store is not None:
        plan.store.restore(plan.snapshot)
    else:
        assert plan.dest is not None  # a plan targets one or the other
        target = FileStore(plan.dest, settings.log_max_bytes)
        try:
            target.restore(plan.snapshot)
        finally:
            target.close()
    return {
        "path": str(plan.archive),
        "kind": "store",
        "sha256": plan.sha256,
        "restored_to": str(plan.dest) if plan.dest is not None else "store",
        "tasks": plan.tasks,
        "executions": plan.executions,
        "ended_in_flight": plan.in_flight,
    }
