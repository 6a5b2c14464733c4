"""redis-py errors as ``errors.StoreError``: the one wrapper every Redis store module uses, so
callers above the store see one error tree whatever the driver raised. Redis that cannot be
used at all (down, a password missing or wrong, no master) becomes ``RedisUnavailable``
with one line naming where and what to change, since the driver's words name neither."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from redis.exceptions import RedisError

from tdauto.errors import StoreError
from tdauto.redisconn import RedisUnavailable, explain, is_unavailable


@contextlib.contextmanager
def driver_errors(what: str, where: str = "TDAUTO_BROKER_URL") -> Iterator[None]:
    """Re-raise a redis-py error as ``StoreError("redis store: <what> failed: ...")``, or as
    ``RedisUnavailable`` (the server at ``where`` down or refusing us)."""
    try:
        yield
    except RedisError as exc:
        if is_unavailable(exc):
            raise RedisUnavailable(explain(exc, where)) from exc
        raise StoreError(f"redis store: {what} failed: {type(exc).__name__}: {exc}") from exc
