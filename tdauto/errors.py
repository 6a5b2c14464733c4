"""One error tree for tdauto.

Every error a user can see derives from :class:`TdautoError`. Input errors also derive from
:class:`ValueError` so callers can catch them the way they catch ``pydantic.ValidationError``;
each names the field at fault and the fix, and is raised before anything is stored or sent.
Driver errors (redis-py, OS errors of the file store) are wrapped in :class:`StoreError`.
"""

from __future__ import annotations

import shlex


class TdautoError(Exception):
    """Base of every tdauto error."""


class InvalidInput(TdautoError, ValueError):
    """Input that cannot be accepted; ``field`` names where it is and the message says the fix."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class ScheduleWarning(UserWarning):
    """Input that is accepted but likely not what was meant (a schedule whose time is past)."""


class NameTaken(InvalidInput):
    """A task name is already used by a different definition."""

    def __init__(self, name: str, task_id: str) -> None:
        self.task_id = task_id
        super().__init__(
            "name",
            f"a different task named {name!r} already exists (id {task_id}); change it with "
            f"`tdauto task update {shlex.quote(name)} --set KEY=VALUE` (or -f FILE), "
            "or pick another name",
        )


class PathNotAllowed(InvalidInput):
    """A path that an action would touch lies outside ``TDAUTO_ALLOWED_PATHS``."""


class NotFound(TdautoError, LookupError):
    """A task or execution that does not exist."""

    def __init__(self, kind: str, key: str, hint: str = "") -> None:
        self.kind = kind
        self.key = key
        super().__init__(f"{kind} {key!r} not found{hint}")


class AmbiguousId(InvalidInput):
    """An id prefix that begins more than one id; ``matches`` are the first few (sorted), and
    one more than ``shown`` means there are more."""

    def __init__(self, kind: str, prefix: str, matches: list[str], shown: int = 5) -> None:
        self.matches = matches
        count = f"more than {shown}" if len(matches) > shown else str(len(matches))
        more = ", …" if len(matches) > shown else ""
        also = ", or the name" if kind == "task" else ""
        super().__init__(
            f"{kind} {prefix!r}",
            f"matches {count} {kind} ids: {', '.join(matches[:shown])}{more}; "
            f"give more of the id{also}",
        )


class StoreNotFound(TdautoError, LookupError):
    """A read found no store (local mode: no data dir); the message says where it looked
    and how to fix it, and nothing was created."""


class StoreError(TdautoError):
    """The store (Redis or the data directory) failed; wraps the driver's error."""


class RedisUnavailable(StoreError):
    """Redis cannot be used as configured (down, needs a password, no master): the message
    names where and what to change. (Raised by ``tdauto.redisconn``; here so that the CLI
    can catch it without importing redis.)"""


class ActionError(TdautoError):
    """An action handler failed; ``kind`` classifies it for retry policies."""

    def __init__(self, message: str, kind: str = "error") -> None:
        self.kind = kind
        super().__init__(message)


class ExecutionTimeout(TdautoError, TimeoutError):
    """``wait()`` ran out of time before the execution reached a terminal state."""
