"""The ``tune`` action: apply the safe advice of ``analyze``, reversibly.

Only safe changes to retries are applied (bounded, re-validated as ``create_task`` does,
logged in ``<data_dir>/reports/tune-changes.jsonl`` with an id a later ``tune`` can
``revert``). A pool's size is a setting of the process that runs the pool, which ``tune`` does
not own, so pool advice is recorded, never applied.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tdauto.actions.advice import POOL_BOUNDS, RETRY_BOUNDS, AnalyzeParams, pool_field, pool_sizes
from tdauto.actions.analysis import analyze_history
from tdauto.actions.context import ActionContext
from tdauto.actions.registry import REGISTRY, action
from tdauto.errors import ActionError
from tdauto.models import ResourceClass, Task, utcnow
from tdauto.private import opener, private_dir
from tdauto.store.backend import Store

CHANGES_FILE = "tune-changes.jsonl"
_FIELD = re.compile(r"^(retry\.max|actions\.(\d+)\.retry\.max|TDAUTO_CONCURRENCY_[A-Z]+)$")


class Change(BaseModel):
    """One change ``tune`` makes: ``field`` of task ``task_id`` (an id or a name) ``from`` ->
    ``to``. Fields: ``retry.max``, ``actions.N.retry.max`` (0-10), and ``TDAUTO_CONCURRENCY_*``
    (recorded as advice only). With ``from``, the change applies only if that is the current
    value, so advice that went stale is skipped."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    task_id: str | None = Field(default=None, min_length=1)
    field: str
    from_: int | None = Field(default=None, alias="from")
    to: int

    @model_validator(mode="after")
    def _check(self) -> Change:
        if not _FIELD.match(self.field):
            raise ValueError(
                f"field {self.field!r} cannot be tuned; use retry.max, actions.N.retry.max or "
                f"one of {', '.join(pool_field(c) for c in ResourceClass)}"
            )
        if self.field.startswith("TDAUTO_"):
            if self.field not in {pool_field(c) for c in ResourceClass}:
                raise ValueError(f"field {self.field!r}: no such pool setting")
            low, high = POOL_BOUNDS
            if self.task_id is not None:
                raise ValueError(f"{self.field} is a pool setting: give no task_id")
        else:
            low, high = RETRY_BOUNDS
            if self.task_id is None:
                raise ValueError(f"changing {self.field} needs the task_id (or name) of the task")
        if not low <= self.to <= high:
            raise ValueError(f"{self.field}: to must be within {low}..{high}, got {self.to}")
        return self


class TuneParams(BaseModel):
    """Params of ``tune``.

    - ``changes``: the changes to make; default: the safe recommendations of ``analyze``
      run with ``analysis``.
    - ``revert``: the id of a change an earlier ``tune`` applied: restore its previous value.
    - ``dry_run``: say what would change, change nothing.
    """

    model_config = ConfigDict(extra="forbid")

    changes: list[Change] | None = Field(default=None, min_length=1)
    revert: str | None = Field(default=None, pattern=r"^[0-9a-f]{6,64}$")
    dry_run: bool = False
    analysis: AnalyzeParams = Field(default_factory=AnalyzeParams)

    @model_validator(mode="after")
    def _one_mode(self) -> TuneParams:
        if self.revert is not None and self.changes is not None:
            raise ValueError("give either changes or revert, not both")
        return self


class ChangeLog:
    """``tune-changes.jsonl``: one JSON line per change applied, advised or reverted."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        private_dir(self.path.parent)
        with open(self.path.with_name(self.path.name + ".lock"), "a", opener=opener) as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def records(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        found = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict):
                    found.append(record)
        return found

    def find(self, change_id: str) -> dict[str, Any] | None:
        return next((r for r in self.records() if r.get("id") == change_id), None)

    def append(self, record: dict[str, Any]) -> None:
        with self._locked(), open(self.path, "a", encoding="utf-8", opener=opener) as out:
            out.write(json.dumps(record, sort_keys=True) + "\n")
            out.flush()
            os.fsync(out.fileno())


def _change_id(ctx: ActionContext, *parts: object) -> str:
    """The same on every attempt of this action, so a redelivered tune does not apply twice."""
    text = ":".join([ctx.idempotency_key, *map(str, parts)])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _find_task(store: Store, key: str) -> Task:
    task = store.get_task(key) or store.get_task_by_name(key)
    if task is None:
        raise ActionError(f"task {key!r} not found (give a task id or name)", "not_found")
    return task


def _policy(task: Task, field: str) -> tuple[dict[str, Any] | None, int]:
    """The retry policy ``field`` lives in (None: the action inherits the task's) and the
    effective ``max``."""
    match = _FIELD.match(field)
    assert match is not None
    if match.group(2) is None:
        return task.retry.model_dump(mode="json"), task.retry.max
    index = int(match.group(2))
    if index >= len(task.actions):
        raise ActionError(
            f"task {task.name!r} has {len(task.actions)} actions; {field} does not exist",
            "invalid",
        )
    own = task.actions[index].retry
    return (None if own is None else own.model_dump(mode="json")), (own or task.retry).max


def _with_policy(ctx: ActionContext, task: Task, field: str, policy: dict[str, Any] | None) -> Task:
    """``task`` with the policy of ``field`` replaced, re-validated as ``create_task`` does."""
    data = task.model_dump(mode="json", exclude={"next_run_at", "last_run_at"})
    match = _FIELD.match(field)
    assert match is not None
    if match.group(2) is None:
        data["retry"] = policy
    else:
        data["actions"][int(match.group(2))]["retry"] = policy
    data["updated_at"] = utcnow().isoformat()
    return Task.model_validate(data, context={"registry": REGISTRY, "settings": ctx.settings})


def _set_max(ctx: ActionContext, task: Task, field: str, to: int) -> tuple[Task, dict[str, Any]]:
    before, current = _policy(task, field)
    base = before if before is not None else task.retry.model_dump(mode="json")
    after = {**base, "max": to}
    record = {"from": current, "to": to, "policy_before": before, "policy_after": after}
    return _with_policy(ctx, task, field, after), record


def _plan(
    ctx: ActionContext, change: Change, change_id: str, reason: str, dry_run: bool
) -> tuple[dict[str, Any], Task | None]:
    """The record of ``change`` against the stored task, and the task to save (None when
    there is nothing to save). Raises ActionError (or a validation error) if it cannot apply."""
    record: dict[str, Any] = {
        "id": change_id,
        "at": utcnow().isoformat(),
        "execution_id": ctx.execution_id,
        "kind": "apply",
        "field": change.field,
        "reason": reason,
    }
    if change.task_id is None:  # a pool: advice for the operator, nothing to apply here
        current = pool_sizes(ctx.settings)[change.field]
        pool = change.field.removeprefix("TDAUTO_CONCURRENCY_").lower()
        return record | {
            "kind": "recommend",
            "task_id": None,
            "from": current,
            "to": change.to,
            "status": "recommended",
            "note": f"not applied: tdauto cannot resize a worker pool it does not own; set "
            f"{change.field}={change.to} where the {pool} pool runs and restart it "
            f"(tdauto worker {pool})",
        }, None
    task = _find_task(ctx.store, change.task_id)
    updated, values = _set_max(ctx, task, change.field, change.to)
    record |= {"task_id": task.id, "task_name": task.name, **values}
    if change.from_ is not None and change.from_ != values["from"]:
        raise ActionError(
            f"task {task.name!r}'s {change.field} is {values['from']}, not {change.from_} as "
            "the change expects (it was changed since the analysis?)",
            "conflict",
        )
    if values["from"] == change.to:
        return record | {"status": "unchanged"}, None
    if dry_run:
        return record | {"status": "dry_run"}, None
    return record | {"status": "applied"}, updated


def _revert(ctx: ActionContext, log: ChangeLog, change_id: str, dry_run: bool) -> dict[str, Any]:
    revert_id = _change_id(ctx, "revert", change_id)
    if (done := log.find(revert_id)) is not None:
        return done
    entry = log.find(change_id)
    if entry is None or entry.get("kind") == "revert":
        raise ActionError(
            f"revert: no applied change {change_id!r} in {log.path}; the ids are in the output "
            "of tune and in that file (on the host that ran it)",
            "not_found",
        )
    if entry.get("status") != "applied":
        raise ActionError(
            f"revert: change {change_id} was {entry.get('status')}, nothing was applied",
            "invalid",
        )
    earlier = [r for r in log.records() if r.get("reverts") == change_id]
    if earlier:
        raise ActionError(
            f"change {change_id} was already reverted by {earlier[0]['id']}", "invalid"
        )
    task = _find_task(ctx.store, entry["task_id"])
    field = entry["field"]
    policy, current = _policy(task, field)
    if policy == entry["policy_after"]:
        restored = entry["policy_before"]  # untouched since: exactly as before
    elif current == entry["to"]:
        base = policy if policy is not None else task.retry.model_dump(mode="json")
        restored = {**base, "max": entry["from"]}  # keep other edits, undo ours
    else:
        raise ActionError(
            f"revert: task {task.name!r}'s {field} is {current} now, not {entry['to']} as change "
            f"{change_id} set it; it was changed since, so it is left alone",
            "conflict",
        )
    record = {
        "id": revert_id,
        "at": utcnow().isoformat(),
        "execution_id": ctx.execution_id,
        "kind": "revert",
        "reverts": change_id,
        "task_id": task.id,
        "task_name": task.name,
        "field": field,
        "from": current,
        "to": entry["from"],
        "policy_before": policy,
        "policy_after": restored,
        "status": "dry_run" if dry_run else "applied",
    }
    if not dry_run:
        ctx.store.save_task(_with_policy(ctx, task, field, restored))
        log.append(record)
    return record


@action("tune", resource_class="cpu", params=TuneParams, process_type="optimization")
def tune(
    ctx: ActionContext,
    *,
    changes: list[Change] | None = None,
    revert: str | None = None,
    dry_run: bool = False,
    analysis: AnalyzeParams | None = None,
) -> dict[str, Any]:
    """Apply the safe recommendations (retries within 0-10), record and make them reversible."""
    log = ChangeLog(ctx.data_dir / "reports" / CHANGES_FILE)
    result: dict[str, Any] = {"dry_run": dry_run, "log": str(log.path)}
    if revert is not None:
        record = _revert(ctx, log, revert, dry_run)
        ctx.logger.info(
            "reverted change %s: task %s %s %s -> %s",
            revert,
            record["task_name"],
            record["field"],
            record["from"],
            record["to"],
        )
        return result | {"mode": "revert", "changes": [record], "applied": 1, "skipped": []}
    proposed: list[tuple[Change, str]]
    if changes is None:
        report = analyze_history(
            ctx.store.list_executions(limit=None),
            ctx.store.list_tasks(),
            analysis or AnalyzeParams(),
            utcnow(),
            pool_sizes(ctx.settings),
        )
        recs = report["recommendations"]
        proposed = [(Change.model_validate(r["change"]), r["message"]) for r in recs if r["safe"]]
        result |= {"mode": "analysis", "needs_review": [r for r in recs if not r["safe"]]}
    else:
        proposed = [(c, "explicit") for c in changes]
        result["mode"] = "explicit"
        for i, change in enumerate(changes):  # refuse the whole list before changing anything
            try:
                _plan(ctx, change, "check", "explicit", True)
            except (ValueError, LookupError) as exc:
                raise ActionError(f"changes[{i}] ({change.field}): {exc}", "invalid") from exc
    done, skipped = [], []
    for i, (change, reason) in enumerate(proposed):
        # analysis advises each field of a task once; an explicit list may repeat one
        where = (i,) if changes is not None else ()
        change_id = _change_id(ctx, *where, change.task_id, change.field)
        if (earlier := log.find(change_id)) is not None:  # this tune ran before: redelivered
            done.append(earlier | {"reused": True})
            continue
        try:
            record, updated = _plan(ctx, change, change_id, reason, dry_run)
            if updated is not None:
                ctx.store.save_task(updated)
        except (ActionError, ValueError, LookupError) as exc:
            if changes is not None:
                raise
            skipped.append({"change": change.model_dump(by_alias=True), "reason": str(exc)})
            ctx.logger.warning("skipped %s of %s: %s", change.field, change.task_id, exc)
            continue
        if record["status"] in ("applied", "recommended"):
            if not dry_run:
                log.append(record)
            ctx.logger.info(
                "%s %s: %s %s -> %s (change %s)%s",
                record["status"],
                record.get("task_name") or "pool",
                change.field,
                record["from"],
                record["to"],
                change_id,
                f"; {record['note']}" if "note" in record else "",
            )
        done.append(record)
    applied = sum(1 for r in done if r["status"] == "applied")
    return result | {"changes": done, "applied": applied, "skipped": skipped}


__all__ = ["CHANGES_FILE", "Change", "ChangeLog", "TuneParams", "tune"]
