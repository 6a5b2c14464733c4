"""The one place an action reads a secret from the worker's environment.

A task names variables (``headers_env``, ``password_env``) whose values the worker sends on
its behalf: as a header to the task's URL, as a password to the task's server. Any name would
let a task send the worker's own secrets (``TDAUTO_SMTP_PASSWORD``, ``TDAUTO_BROKER_URL``) to
a server it controls. So only names matching ``TDAUTO_TASK_SECRETS`` (fnmatch patterns such
as ``APP_*``; empty = none) may be read, and tdauto's own ``TDAUTO_*`` never, whatever the
patterns. The name is checked when the task is created and again when it is read (the
worker's setting may differ from the creator's).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase

from tdauto.errors import ActionError
from tdauto.redact import is_secret_key

SETTING = "TDAUTO_TASK_SECRETS"
OWN_PREFIX = "TDAUTO_"


def refusal(variable: str, patterns: Sequence[str]) -> str | None:
    """Why a task may not read ``variable``, or None when it may."""
    if variable.upper().startswith(OWN_PREFIX):
        return (
            f"{variable} is one of tdauto's own settings, which tasks never read; put the "
            f"secret in another variable (e.g. APP_{variable[len(OWN_PREFIX) :]}) allowed by "
            f"{SETTING}"
        )
    if not patterns:
        return (
            f"{SETTING} is empty, so tasks may read no environment variable; allow this one "
            f"with e.g. {SETTING}={_example(variable)}"
        )
    if not any(fnmatchcase(variable, pattern) for pattern in patterns):
        return (
            f"{variable} does not match {SETTING} ({','.join(patterns)}); add a pattern for "
            f"it, e.g. {SETTING}={','.join([*patterns, _example(variable)])}"
        )
    return None


def check_name(field: str, variable: str, patterns: Sequence[str]) -> None:
    """At validation: ValueError naming the task's ``field`` when ``variable`` is refused."""
    reason = refusal(variable, patterns)
    if reason is not None:
        raise ValueError(f"{field}: {reason}")


def read(field: str, variable: str, patterns: Sequence[str]) -> str | None:
    """At run time: the value of ``variable`` (None when unset), if tasks may read it."""
    reason = refusal(variable, patterns)
    if reason is not None:
        raise ActionError(f"{field}: {reason}", "not_allowed")
    return os.environ.get(variable)


def child_environment(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` without tdauto's secret settings (passwords, keys, the broker URL), for a
    program a task runs: it inherits the worker's environment but not tdauto's secrets."""
    return {
        name: value
        for name, value in env.items()
        if not (
            name.upper().startswith(OWN_PREFIX)
            and (is_secret_key(name.lower()) or name.upper() == "TDAUTO_BROKER_URL")
        )
    }


def _example(variable: str) -> str:
    head = variable.split("_", 1)[0]
    return f"{head}_*" if head and head != variable else variable
