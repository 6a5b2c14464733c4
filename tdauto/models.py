"""The pydantic models and enums every part of tdauto shares.

Models hold data and validate it; they know nothing of Celery, Redis or files. Validation that
needs the action registry or the allowed paths (an action's params) reads them from the
pydantic validation *context* (``Task.model_validate(data, context=...)``), so records loaded
back from a store are not re-checked against a registry that may have changed since.
"""

from __future__ import annotations

import functools
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tdauto.policies import NO_RETRY, RetryPolicy, RunAfter
from tdauto.units import parse_duration_s


class _CaseInsensitive(StrEnum):
    """A str enum that also accepts its member names and values in any case."""

    @classmethod
    def _missing_(cls, value: object) -> Any:
        if isinstance(value, str):
            return _folded_members(cls).get(value.lower())
        return None


@functools.cache
def _folded_members(cls: type[_CaseInsensitive]) -> dict[str, Any]:
    """Lower-cased values and names -> member, built once per enum (a value in another case,
    "DAILY", is looked up on every task created). The first member to claim a key keeps it."""
    table: dict[str, Any] = {}
    for member in cls:
        table.setdefault(member.value.lower(), member)
        table.setdefault(member.name.lower(), member)
    return table


class ProcessType(_CaseInsensitive):
    DEPLOYMENT = "deployment"
    MAINTENANCE = "maintenance"
    OPTIMIZATION = "optimization"
    MONITORING = "monitoring"


class ScheduleType(_CaseInsensitive):
    ONCE = "once"
    INTERVAL = "interval"
    HOURLY = "hourly"
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"
    CRON = "cron"


class ExecutionStatus(_CaseInsensitive):
    PENDING = "PENDING"
    WAITING = "WAITING"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    RETRYING = "RETRYING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMED_OUT = "TIMED_OUT"
    SKIPPED = "SKIPPED"
    MISSED = "MISSED"

    @property
    def terminal(self) -> bool:
        """True for states an execution or action never leaves."""
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset(
    {
        ExecutionStatus.SUCCEEDED,
        ExecutionStatus.FAILED,
        ExecutionStatus.CANCELLED,
        ExecutionStatus.TIMED_OUT,
        ExecutionStatus.SKIPPED,
        ExecutionStatus.MISSED,
    }
)


class ResourceClass(_CaseInsensitive):
    CPU = "cpu"
    MEMORY = "memory"
    STORAGE = "storage"


class Trigger(_CaseInsensitive):
    SCHEDULE = "schedule"
    MANUAL = "manual"
    EVENT = "event"
    CATCHUP = "catchup"


def utcnow() -> datetime:
    """The current time, aware, in UTC (the one clock models use for defaults)."""
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


_SLOT_NAMESPACE = uuid.UUID("6f1c3e52-6a8f-4f0e-9a4e-2b9f3c1d7e10")


def slot_execution_id(task_id: str, fire_ts: float) -> str:
    """The execution id of the slot ``task_id@fire_ts``: the same slot always maps to one id,
    so a second dispatch of a slot finds the first execution instead of making another."""
    return uuid.uuid5(_SLOT_NAMESPACE, f"{task_id}@{int(fire_ts)}").hex


_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")

# Keys each schedule type accepts (beside the common ones) and which of them are required.
SCHEDULE_KEYS: dict[ScheduleType, tuple[frozenset[str], frozenset[str]]] = {
    ScheduleType.ONCE: (frozenset({"at"}), frozenset({"at"})),
    ScheduleType.INTERVAL: (frozenset({"every"}), frozenset({"every"})),
    ScheduleType.HOURLY: (frozenset({"minute"}), frozenset()),
    ScheduleType.DAILY: (frozenset({"hour", "minute"}), frozenset({"hour"})),
    ScheduleType.WEEKLY: (frozenset({"day_of_week", "hour", "minute"}), frozenset({"day_of_week"})),
    ScheduleType.MONTHLY: (frozenset({"day", "hour", "minute"}), frozenset({"day"})),
    ScheduleType.CRON: (frozenset({"expression"}), frozenset({"expression"})),
}
COMMON_SCHEDULE_KEYS = frozenset({"timezone", "jitter", "spread", "start_date", "end_date"})


class ScheduleConfig(BaseModel):
    """``schedule_config``: every key any schedule type takes; the Task checks which apply.

    ``day_of_week`` follows cron and Celery's crontab: 0 (or 7) is Sunday, 1 Monday; names
    ``mon``..``sun`` are accepted and stored as names so no reader has to guess.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    at: datetime | None = None
    every: float | None = Field(default=None, description="seconds between runs")
    minute: int | None = Field(default=None, ge=0, le=59)
    hour: int | None = Field(default=None, ge=0, le=23)
    day_of_week: str | None = None
    day: int | Literal["last"] | None = None
    expression: str | None = None
    timezone: str | None = None
    jitter: float | None = Field(default=None, ge=0, description="random delay, seconds")
    spread: float | None = Field(default=None, ge=0, description="per-task offset, seconds")
    start_date: datetime | None = None
    end_date: datetime | None = None

    @field_validator("every", mode="before")
    @classmethod
    def _every(cls, value: object) -> object:
        if value is None:
            return None
        seconds = parse_duration_s(value)
        if seconds < 1:
            # a slot is identified to the second (task_id@fire_ts), so one per second at most
            raise ValueError(f"every must be at least 1 second, got {value!r}")
        return seconds

    @field_validator("day_of_week", mode="before")
    @classmethod
    def _dow(cls, value: object) -> object:
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 7:
            return _DAY_NAMES[value % 7]
        if isinstance(value, str) and value[:3].lower() in _DAY_NAMES:
            return value[:3].lower()
        if isinstance(value, str) and value.isdigit() and 0 <= int(value) <= 7:
            return _DAY_NAMES[int(value) % 7]
        raise ValueError(
            f"invalid day_of_week {value!r}; use 0-6 (0 = Sunday, as cron) or mon..sun"
        )

    @field_validator("day")
    @classmethod
    def _day(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, int) and not 1 <= value <= 31:
            raise ValueError(f"day must be 1-31 or 'last', got {value}")
        return value

    @field_validator("expression")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from croniter import croniter

        fields = value.split()
        if any(
            tok in ("R", "H") or tok.startswith(("R", "H")) for f in fields for tok in f.split(",")
        ):
            raise ValueError(
                f"cron expression {value!r}: random (R) and hashed (H) fields are not supported; "
                "fire times must be deterministic"
            )
        if len(fields) != 5 or not croniter.is_valid(value):
            raise ValueError(
                f"invalid cron expression {value!r}; use 5 fields: minute hour day month weekday"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown time zone {value!r}; use an IANA name such as 'Europe/Paris'"
            ) from exc
        return value

    def given(self) -> dict[str, Any]:
        """The keys the user set, JSON-ready."""
        return self.model_dump(mode="json", exclude_none=True)

    def given_keys(self) -> set[str]:
        """The names of the keys the user set (``given()`` without serializing values)."""
        return {name for name in type(self).model_fields if getattr(self, name) is not None}


class Resources(BaseModel):
    """Percent of one worker host's capacity an action of the task reserves while it runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cpu: float = Field(default=0.0, ge=0, le=100)
    memory: float = Field(default=0.0, ge=0, le=100)
    storage: float = Field(default=0.0, ge=0, le=100)

    def largest_class(self) -> ResourceClass:
        """The class of the largest reservation (cpu when all are equal)."""
        best = max(
            (ResourceClass.CPU, ResourceClass.MEMORY, ResourceClass.STORAGE),
            key=lambda c: getattr(self, c.value),
        )
        return best


class ActionValidator(Protocol):
    """What the validation context's ``registry`` must do (the action registry does)."""

    def validate_params(
        self, action_type: str, params: dict[str, Any], context: dict[str, Any]
    ) -> dict[str, Any]: ...


class ActionSpec(BaseModel):
    """One step of a task: an action type and its params."""

    # params may hold secrets: errors name the field, never echo its value
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    type: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
    resource_class: ResourceClass | None = None
    retry: RetryPolicy | None = Field(default=None, description="default: the task's")
    timeout: float | None = Field(default=None, description="seconds: soft signal, then kill")
    on_failure: list[ActionSpec] = Field(
        default_factory=list, description="recovery steps after this action's last retry"
    )

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout(cls, value: object) -> object:
        return None if value is None else parse_duration_s(value)

    @field_validator("on_failure")
    @classmethod
    def _flat(cls, value: list[ActionSpec]) -> list[ActionSpec]:
        if any(step.on_failure for step in value):
            raise ValueError("recovery steps cannot have on_failure steps of their own")
        return value

    @field_validator("params")
    @classmethod
    def _params(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        context = info.context or {}
        registry: ActionValidator | None = context.get("registry")
        action_type = info.data.get("type")
        if registry is None or action_type is None:
            return value
        return registry.validate_params(action_type, value, context)


MisfirePolicy = Literal["run_once", "skip", "run_all"]
OverlapPolicy = Literal["skip", "allow", "queue", "replace"]


class Task(BaseModel):
    """An automation task: what to run, when, and with what share of a host.

    ``next_run_at`` and ``last_run_at`` are the scheduler's run state, kept apart from the
    definition in the store and filled in when a task is read.
    """

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    id: str = Field(default_factory=new_id)
    name: str = Field(min_length=1, max_length=200)
    type: ProcessType
    schedule: ScheduleType
    schedule_config: ScheduleConfig = Field(default_factory=ScheduleConfig)
    actions: list[ActionSpec] = Field(min_length=1)
    resources: Resources = Field(default_factory=Resources)
    enabled: bool = True
    priority: int = Field(default=5, ge=0, le=9)
    description: str = ""
    misfire: MisfirePolicy = Field(
        default="run_once",
        description="slots missed while no scheduler ran: one catch-up run, none, or each",
    )
    misfire_grace: float = Field(
        default=60.0,
        description="seconds a slot may be late and still count as on time (then: misfire)",
    )
    max_catchup: int = Field(default=10, ge=1, le=1000, description="run_all: most runs")
    overlap: OverlapPolicy = Field(
        default="skip", description="when a run is due while the previous one still runs"
    )
    max_concurrent: int | None = Field(
        default=None, ge=1, description="active runs at most (default 1; no limit for allow)"
    )
    lock: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="conflict lock: tasks sharing it never run at the same time",
    )
    retry: RetryPolicy = Field(default=NO_RETRY, description="actions' default")
    deadline: float | None = Field(default=None, description="seconds a whole run may take")
    queue_timeout: float | None = Field(
        default=None, description="seconds an action may wait in its queue"
    )
    on_failure: list[ActionSpec] = Field(
        default_factory=list, description="recovery steps after any action's last retry"
    )
    run_after: RunAfter | None = None
    labels: dict[str, str] = Field(
        default_factory=dict, description="free tags; `tdauto apply` marks its tasks with one"
    )
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    next_run_at: datetime | None = None
    last_run_at: datetime | None = None

    @field_validator("deadline", "queue_timeout", mode="before")
    @classmethod
    def _durations(cls, value: object) -> object:
        return None if value is None else parse_duration_s(value)

    @field_validator("misfire_grace", mode="before")
    @classmethod
    def _grace(cls, value: object) -> object:
        return parse_duration_s(value)

    @property
    def concurrency_limit(self) -> int | None:
        """Active runs allowed at once: ``max_concurrent``, else 1 (none for ``allow``)."""
        if self.max_concurrent is not None:
            return self.max_concurrent
        return None if self.overlap == "allow" else 1

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("task name must not be empty or blank; give the task a clear name")
        return value

    @model_validator(mode="after")
    def _schedule_keys(self) -> Task:
        allowed, required = SCHEDULE_KEYS[self.schedule]
        given = self.schedule_config.given_keys()
        extra = given - allowed - COMMON_SCHEDULE_KEYS
        if extra:
            raise ValueError(
                f"schedule_config: key(s) {sorted(extra)} do not apply to {self.schedule.name} "
                f"schedules; allowed: {sorted(allowed | COMMON_SCHEDULE_KEYS)}"
            )
        config = self.schedule_config
        if self.schedule is ScheduleType.INTERVAL and config.every is not None:
            offset = (config.jitter or 0) + (config.spread or 0)
            if offset >= config.every:
                raise ValueError(
                    "schedule_config: jitter + spread must be less than every "
                    f"({offset:g}s >= {config.every:g}s), or runs would overtake each other"
                )
        missing = required - given
        if missing:
            raise ValueError(
                f"schedule_config: {self.schedule.name} schedules need {sorted(missing)}"
            )
        return self

    def definition(self) -> dict[str, Any]:
        """What the user defined (no ids, times or run state): equal definitions are the same
        task, so creating one twice returns the first."""
        return self.model_dump(
            mode="json",
            exclude={"id", "created_at", "updated_at", "next_run_at", "last_run_at"},
        )

    @property
    def zone(self) -> str | None:
        return self.schedule_config.timezone


class ActionRun(BaseModel):
    """The record of one action of an execution."""

    model_config = ConfigDict(extra="forbid")

    index: int
    type: str
    status: ExecutionStatus = ExecutionStatus.PENDING
    attempts: int = 0
    host: str | None = None
    queue: str | None = None
    resource_class: ResourceClass | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    phase: Literal["main", "recovery"] = "main"
    retry: RetryPolicy = NO_RETRY
    timeout_s: float | None = None
    on_failure: list[ActionSpec] = Field(default_factory=list)
    sent_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    next_retry_at: datetime | None = None
    output: dict[str, Any] | None = None
    error: str | None = None
    error_kind: str | None = None
    lost: int = Field(default=0, description="times its worker died and it was re-queued")
    waiting_since: datetime | None = Field(
        default=None, description="when it first waited for room on a host"
    )


class Execution(BaseModel):
    """One run of a task, from its slot (or trigger) to a terminal state."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(default_factory=new_id)
    task_id: str
    task_name: str
    status: ExecutionStatus = ExecutionStatus.PENDING
    trigger: Trigger = Trigger.MANUAL
    scheduled_for: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    resources: Resources = Field(default_factory=Resources)
    lock: str | None = None
    priority: int = Field(default=5, ge=0, le=9)
    deadline_at: datetime | None = None
    queue_timeout_s: float | None = None
    recovery: list[ActionSpec] = Field(default_factory=list)
    retry: RetryPolicy = NO_RETRY
    outcome: ExecutionStatus | None = Field(
        default=None, description="how the run ends once its recovery steps are done"
    )
    triggered_by: dict[str, Any] | None = None
    actions: list[ActionRun] = Field(default_factory=list)

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()
