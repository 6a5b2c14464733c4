"""redis-py errors as ``errors.StoreError``: the one wrapper every Redis store module uses, so
callers above the store see one error tree whatever the driver raised."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from redis.exceptions import RedisError

from tdauto.errors import StoreError


@contextlib.contextmanager
def driver_errors(what: str) -> Iterator[None]:
    """Re-raise a redis-py error as ``StoreError("redis store: <what> failed: ...")``."""
    try:
        yield
    except RedisError as exc:
        raise StoreError(f"redis store: {what} failed: {type(exc).__name__}: {exc}") from exc
