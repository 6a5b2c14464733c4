"""``RedisStore``'s id prefixes: ``HSCAN`` of the task hash and ``ZSCAN`` of the execution
index with ``MATCH prefix*``. Redis walks the one key (not the whole keyspace) on its side and
sends back only the matches, a page of 1,000 members a round trip; no record is read."""

from __future__ import annotations

import itertools
import re
from typing import TYPE_CHECKING, Any

from tdauto.store.ids import IdPrefixes
from tdauto.store.redis_errors import driver_errors

if TYPE_CHECKING:
    import redis

    from tdauto.store.keys import Keys

_PAGE = 1000
_GLOB = re.compile(r"([*?\[\]\\])")


class RedisIds(IdPrefixes):
    keys: Keys
    _r: redis.Redis
    _where: str

    def task_ids_starting(self, prefix: str, limit: int) -> list[str]:
        with driver_errors(f"looking up task ids starting {prefix!r}", self._where):
            found = self._r.hscan_iter(self.keys.tasks, match=_match(prefix), count=_PAGE)
            return [str(task_id) for task_id, _ in itertools.islice(found, limit)]

    def execution_ids_starting(self, prefix: str, limit: int) -> list[str]:
        with driver_errors(f"looking up execution ids starting {prefix!r}", self._where):
            found: Any = self._r.zscan_iter(self.keys.executions, match=_match(prefix), count=_PAGE)
            return [str(member) for member, _ in itertools.islice(found, limit)]


def _match(prefix: str) -> str:
    """``prefix*`` as a Redis glob, the prefix's own ``*?[]\\`` taken literally."""
    return _GLOB.sub(r"\\\1", prefix) + "*"
