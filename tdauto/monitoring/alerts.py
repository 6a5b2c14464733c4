"""Alert rules, their evaluation, and sending with cooldown, de-duplication and history.

Rules (``kind``):

- ``metric``: a host metric (``cpu_percent``, ``memory_percent``, ``disk_percent``,
  ``load_per_cpu``) above ``above`` in every sample of the last ``for`` (and at least
  ``min_samples`` of them), per host; read from the ``collect`` action's samples.
- ``failed``: an execution that ended FAILED or TIMED_OUT (its retries and recovery spent)
  within the last ``within``; one alert per execution.
- ``missed``: a slot recorded MISSED within ``within``.
- ``late``: a scheduled run not started ``after`` past its slot, or an enabled task whose
  next fire time is ``after`` in the past (no beat is firing).
- ``stale``: ``task`` has not succeeded for ``max_age``.

Each finding has a key (rule name + subject: host, execution id or task). A key is sent once
per ``cooldown`` (``Store.acquire_cooldown``, shared by every host), and a key seen twice in
one evaluation is sent once. Every alert sent or suppressed is kept in the ``alerts``
history with what each notifier answered.
"""

from __future__ import annotations

import hashlib
import logging
import time
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from tdauto.models import ExecutionStatus
from tdauto.monitoring import notifiers, samples
from tdauto.monitoring.rollups import record_alert
from tdauto.settings import Settings
from tdauto.store.backend import Store
from tdauto.units import parse_duration_s

S = ExecutionStatus
HISTORY = "alerts"
Severity = Literal["info", "warning", "critical"]


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str | None = Field(default=None, description="defaults to the kind")
    severity: Severity = "warning"

    @property
    def label(self) -> str:
        return self.name or str(getattr(self, "kind", "rule"))


Duration = Annotated[float, BeforeValidator(parse_duration_s)]
"""Seconds, or a duration with a unit ("90s", "5m", "2h", "7days")."""


class MetricRule(_Rule):
    kind: Literal["metric"]
    metric: Literal["cpu_percent", "memory_percent", "disk_percent", "load_per_cpu"]
    above: float
    for_s: Duration = Field(default=300.0, alias="for")
    host: str | None = None
    min_samples: int = Field(default=2, ge=1)


class FailedRule(_Rule):
    kind: Literal["failed"]
    within_s: Duration = Field(default=900.0, alias="within")
    task: str | None = None
    severity: Severity = "critical"


class MissedRule(_Rule):
    kind: Literal["missed"]
    within_s: Duration = Field(default=3600.0, alias="within")
    task: str | None = None


class LateRule(_Rule):
    kind: Literal["late"]
    after_s: Duration = Field(default=300.0, alias="after")


class StaleRule(_Rule):
    kind: Literal["stale"]
    task: str
    max_age_s: Duration = Field(alias="max_age")


Rule = Annotated[
    MetricRule | FailedRule | MissedRule | LateRule | StaleRule, Field(discriminator="kind")
]


def finding(
    rule: _Rule, kind: str, subject: str, summary: str, now: float, **details: Any
) -> dict[str, Any]:
    return {
        "rule": rule.label,
        "kind": kind,
        "severity": rule.severity,
        "subject": subject,
        "key": f"{rule.label}:{subject}",
        "summary": summary,
        "details": details,
        "ts": now,
        "at": datetime.fromtimestamp(now, UTC).isoformat(),
    }


def _metric(store: Store, rule: MetricRule, now: float) -> list[dict[str, Any]]:
    by_host: dict[str, list[float]] = {}
    for record in samples.recent(store, samples.HISTORY, now - rule.for_s):
        host = str(record.get("host"))
        value = record.get(rule.metric)
        if (rule.host is None or host == rule.host) and isinstance(value, int | float):
            by_host.setdefault(host, []).append(float(value))
    return [
        finding(
            rule,
            "metric",
            host,
            f"{rule.metric} on {host} above {rule.above:g} for {rule.for_s:g}s "
            f"(lowest {min(values):g}, latest {values[0]:g})",
            now,
            host=host,
            metric=rule.metric,
            threshold=rule.above,
            latest=values[0],
            samples=len(values),
        )
        for host, values in sorted(by_host.items())
        if len(values) >= rule.min_samples and min(values) > rule.above
    ]


def _ended(
    store: Store, statuses: list[ExecutionStatus], since: float, task: str | None
) -> list[Any]:
    found = []
    for status in statuses:
        for ex in store.list_executions(status=status, limit=200):
            recent = ex.finished_at is not None and ex.finished_at.timestamp() >= since
            if recent and (task is None or task in (ex.task_name, ex.task_id)):
                found.append(ex)
    return found


def _failed(store: Store, rule: FailedRule, now: float) -> list[dict[str, Any]]:
    return [
        finding(
            rule,
            "failed",
            ex.id,
            f"{ex.task_name} {ex.status.value}: {ex.error or 'no error recorded'}",
            now,
            task=ex.task_name,
            execution_id=ex.id,
            status=ex.status.value,
            finished_at=ex.finished_at.isoformat() if ex.finished_at else None,
        )
        for ex in _ended(store, [S.FAILED, S.TIMED_OUT], now - rule.within_s, rule.task)
    ]


def _missed(store: Store, rule: MissedRule, now: float) -> list[dict[str, Any]]:
    return [
        finding(
            rule,
            "missed",
            ex.id,
            f"{ex.task_name}: slot {ex.scheduled_for} missed ({ex.error})",
            now,
            task=ex.task_name,
            execution_id=ex.id,
            scheduled_for=ex.scheduled_for.isoformat() if ex.scheduled_for else None,
        )
        for ex in _ended(store, [S.MISSED], now - rule.within_s, rule.task)
    ]


def _late(store: Store, rule: LateRule, now: float) -> list[dict[str, Any]]:
    found = []
    for status in (S.PENDING, S.WAITING, S.QUEUED):
        for ex in store.list_executions(status=status, limit=500):
            slot = ex.scheduled_for
            if slot is not None and ex.started_at is None and slot.timestamp() < now - rule.after_s:
                late_s = round(now - slot.timestamp(), 1)
                found.append(
                    finding(
                        rule,
                        "late",
                        ex.id,
                        f"{ex.task_name}: run for {slot.isoformat()} not started after {late_s}s",
                        now,
                        task=ex.task_name,
                        execution_id=ex.id,
                        late_s=late_s,
                    )
                )
    for task in store.list_tasks():
        nxt = task.next_run_at
        if task.enabled and nxt is not None and nxt.timestamp() < now - rule.after_s:
            found.append(
                finding(
                    rule,
                    "late",
                    f"task:{task.id}:{int(nxt.timestamp())}",
                    f"{task.name}: due at {nxt.isoformat()} and not fired (is a beat running?)",
                    now,
                    task=task.name,
                    due_at=nxt.isoformat(),
                )
            )
    return found


def _stale(store: Store, rule: StaleRule, now: float) -> list[dict[str, Any]]:
    task = store.get_task_by_name(rule.task) or store.get_task(rule.task)
    if task is None:
        return [finding(rule, "stale", rule.task, f"task {rule.task!r} does not exist", now)]
    last_ok = store.rollup_latest().get(f"task_ok|{task.name}")
    since = last_ok[0] if last_ok else task.created_at.timestamp()
    if now - since <= rule.max_age_s:
        return []
    what = "last succeeded" if last_ok else "has never succeeded; created"
    when = datetime.fromtimestamp(since, UTC).isoformat()
    return [
        finding(
            rule,
            "stale",
            task.name,
            f"{task.name} {what} {when}, over {rule.max_age_s:g}s ago",
            now,
            task=task.name,
            last_success=when if last_ok else None,
        )
    ]


def evaluate(store: Store, rules: list[Any], now: float | None = None) -> list[dict[str, Any]]:
    """Every finding of ``rules`` at ``now``; duplicates (same key) once."""
    at = now if now is not None else time.time()
    found: dict[str, dict[str, Any]] = {}
    for rule in rules:
        items: list[dict[str, Any]]
        if isinstance(rule, MetricRule):
            items = _metric(store, rule, at)
        elif isinstance(rule, FailedRule):
            items = _failed(store, rule, at)
        elif isinstance(rule, MissedRule):
            items = _missed(store, rule, at)
        elif isinstance(rule, LateRule):
            items = _late(store, rule, at)
        else:
            items = _stale(store, rule, at)
        for item in items:
            found.setdefault(item["key"], item)
    return list(found.values())


class Notifier(BaseModel):
    """Where to send: ``{"type": "log"}``, ``{"type": "webhook", "url": ...}``,
    ``{"type": "email", "to": [...]}``."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["log", "webhook", "email"]
    url: str | None = None
    to: list[str] = Field(default_factory=list)

    @field_validator("url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"webhook url must be http:// or https://, got {value!r}")
        return value


def deliver(
    alert: dict[str, Any],
    notify: list[Notifier],
    settings: Settings,
    logger: logging.Logger,
    timeout_s: float,
) -> dict[str, str]:
    """Send ``alert`` through every notifier; what each answered (``ok`` or the error)."""
    results: dict[str, str] = {}
    for n, target in enumerate(notify):
        name = f"{n}:{target.type}"
        try:
            if target.type == "log":
                notifiers.send_log(logger, alert)
            elif target.type == "webhook":
                assert target.url is not None
                notifiers.send_webhook(target.url, alert, settings, timeout_s)
            else:
                notifiers.send_email(target.to, alert, settings, timeout_s)
            results[name] = "ok"
        except Exception as exc:  # a notifier down must not keep the others from trying
            results[name] = f"{type(exc).__name__}: {exc}"
            logger.error("alert %s: %s notifier failed: %s", alert["key"], target.type, exc)
    return results


def dispatch(
    store: Store,
    settings: Settings,
    found: list[dict[str, Any]],
    notify: list[Notifier],
    cooldown_s: float,
    logger: logging.Logger,
    timeout_s: float = 10.0,
    keep: int = 5000,
) -> dict[str, list[dict[str, Any]]]:
    """Send each finding not in its cooldown; keep every one in the alert history."""
    sent, suppressed = [], []
    for alert in found:
        token = hashlib.sha256(alert["key"].encode()).hexdigest()[:32]
        if not store.acquire_cooldown(f"alert:{token}", cooldown_s):
            suppressed.append({**alert, "suppressed": "cooldown"})
            continue
        record = {**alert, "delivered": deliver(alert, notify, settings, logger, timeout_s)}
        store.append_history(HISTORY, record, keep)
        record_alert(store, alert["rule"], alert["ts"])
        sent.append(record)
    return {"sent": sent, "suppressed": suppressed}
