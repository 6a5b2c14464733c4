"""The exit code of each kind of expected error, documented in the README: 0 ok, 1 a failed
run or operation, 2 bad input or usage, 3 not found, 4 the store cannot be reached. Kept
below the CLI so any front end (an HTTP API later) sorts errors the same way."""

from __future__ import annotations

from pydantic import ValidationError

from tdauto.errors import (
    ExecutionTimeout,
    NotFound,
    RedisUnavailable,
    StoreError,
    StoreNotFound,
    TdautoError,
)

OK, FAILED, BAD_INPUT, NOT_FOUND, NO_STORE = 0, 1, 2, 3, 4

EXPECTED = (TdautoError, ValidationError, ValueError)
"""Errors a person causes or meets (bad input, a missing task, Redis down): one line, no
traceback. Anything else is a bug and keeps its traceback."""


def exit_code(exc: BaseException) -> int:
    """The exit code for an expected error (``EXPECTED``)."""
    if isinstance(exc, RedisUnavailable):
        return NO_STORE
    if isinstance(exc, NotFound | StoreNotFound):  # nothing there (and nothing was made)
        return NOT_FOUND
    if isinstance(exc, ExecutionTimeout | StoreError):  # a run or the store let it down
        return FAILED
    return BAD_INPUT  # refused as given (a file, an id, an option): the user can fix it
