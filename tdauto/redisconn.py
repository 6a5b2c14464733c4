"""The one place tdauto makes Redis clients for ``TDAUTO_BROKER_URL`` (store, leader lock,
queue depths, /metrics), and the one place that says what a Redis failure means.

Why one place: a ``sentinel://`` URL is not something ``redis.Redis.from_url`` reads; each
client has to ask the sentinels for the master (``Sentinel.master_for``), which then finds the
new master after a failover on its own. And redis-py's errors name the symptom, not the fix:
a server with ``requirepass`` reached without a password answers a long command with
"Protocol error: unauthenticated multibulk length". :func:`explain` turns such errors into one
line naming the address and the setting to change, and :func:`check` is the quick ping the
CLI makes before it starts anything (``RedisUnavailable``, exit 1, no traceback).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import redis
import redis.asyncio as aredis
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import MasterNotFoundError, Sentinel

from tdauto import redis_url
from tdauto.errors import RedisUnavailable

if TYPE_CHECKING:
    from tdauto.settings import Settings

CHECK_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class Endpoint:
    """Where Redis is: the checked URL plus, for Sentinel, the master's name and the
    sentinels' own password."""

    url: str
    master: str = "mymaster"
    sentinel_password: str | None = None

    @classmethod
    def of(cls, settings: Settings) -> Endpoint:
        if settings.broker_url is None:
            raise ValueError("TDAUTO_BROKER_URL is unset: local mode has no Redis")
        secret = settings.sentinel_password
        return cls(
            settings.broker_url,
            settings.sentinel_master,
            secret.get_secret_value() if secret is not None else None,
        )

    @property
    def target(self) -> redis_url.RedisURL:
        return redis_url.parse(self.url)

    def where(self) -> str:
        target = self.target
        if target.sentinel:
            return f"sentinels {target.where()} (master {self.master!r})"
        return target.where()

    def _sentinel_kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        found = {k: v for k, v in kwargs.items() if k.startswith("socket_")}
        if self.sentinel_password is not None:
            found["password"] = self.sentinel_password
        return found

    def _master_kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        target = self.target
        extra: dict[str, Any] = {"db": target.db}
        if target.password is not None:
            extra["password"] = target.password
        if target.username is not None:
            extra["username"] = target.username
        return {**kwargs, **extra}

    def _for_socket(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """``kwargs`` without the TCP-only options, which a Unix socket connection refuses."""
        if self.target.scheme != "unix":
            return kwargs
        return {k: v for k, v in kwargs.items() if not k.startswith("socket_keepalive")}

    def client(self, **kwargs: Any) -> redis.Redis:
        """A client of the server (or of the sentinels' current master); ``kwargs`` as
        ``redis.Redis`` takes them. Nothing connects until the first command."""
        target = self.target
        kwargs = self._for_socket(kwargs)
        if not target.sentinel:
            return redis.Redis.from_url(self.url, **kwargs)
        sentinel = Sentinel(list(target.hosts), sentinel_kwargs=self._sentinel_kwargs(kwargs))
        return sentinel.master_for(self.master, **self._master_kwargs(kwargs))

    def async_client(self, **kwargs: Any) -> aredis.Redis:
        """:meth:`client` for ``redis.asyncio`` (one per event loop: see store/redis_async)."""
        target = self.target
        kwargs = self._for_socket(kwargs)
        if not target.sentinel:
            return aredis.Redis.from_url(self.url, **kwargs)
        sentinel = AsyncSentinel(list(target.hosts), sentinel_kwargs=self._sentinel_kwargs(kwargs))
        return sentinel.master_for(self.master, **self._master_kwargs(kwargs))

    def kombu_url(self) -> str:
        """The URL as kombu reads it: a ``unix://`` socket is ``redis+socket://`` there, its
        database the ``virtual_host``."""
        target = self.target
        if target.scheme != "unix":
            return self.url
        auth = f":{quote(target.password, safe='')}@" if target.password is not None else ""
        return f"redis+socket://{auth}{target.path}?virtual_host={target.db}"

    def kombu_options(self) -> dict[str, Any]:
        """The broker transport options a ``sentinel://`` broker needs (kombu's names)."""
        if not self.target.sentinel:
            return {}
        options: dict[str, Any] = {"master_name": self.master}
        if self.sentinel_password is not None:
            options["sentinel_kwargs"] = {"password": self.sentinel_password}
        return options


def explain(exc: BaseException, where: str) -> str:
    """One line saying what a Redis failure at ``where`` means and what to change."""
    text = str(exc)
    lower = text.lower()
    if "noauth" in lower or "unauthenticated" in lower or "authentication required" in lower:
        if where.startswith("sentinels "):
            return (
                f"Redis at {where} needs a password (NOAUTH): put the master's in "
                "TDAUTO_BROKER_URL and the sentinels' in TDAUTO_SENTINEL_PASSWORD"
            )
        return f"Redis at {where} needs a password (NOAUTH): put it in TDAUTO_BROKER_URL"
    if "wrongpass" in lower or "invalid password" in lower or "invalid username" in lower:
        return (
            f"Redis at {where} refused the password (WRONGPASS): fix the password in "
            "TDAUTO_BROKER_URL"
        )
    if isinstance(exc, MasterNotFoundError) or "no master found" in lower:
        return (
            f"no master from the {where}: start the sentinels, or fix TDAUTO_BROKER_URL, "
            "TDAUTO_SENTINEL_MASTER or TDAUTO_SENTINEL_PASSWORD"
        )
    reason = text.rstrip(".").rpartition(". ")[2] or type(exc).__name__
    return f"Redis at {where} is not reachable ({reason}): start it or fix TDAUTO_BROKER_URL"


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means Redis cannot be used at all (down, auth), not a failed command."""
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError, MasterNotFoundError)):
        return True
    lower = str(exc).lower()
    return "noauth" in lower or "unauthenticated" in lower or "wrongpass" in lower


def check(endpoint: Endpoint) -> None:
    """A ``PING`` with short timeouts and no retry; ``RedisUnavailable`` with :func:`explain`'s
    line when Redis cannot be used."""
    client = endpoint.client(
        socket_timeout=CHECK_TIMEOUT_S,
        socket_connect_timeout=CHECK_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        client.ping()
    except redis.RedisError as exc:
        raise RedisUnavailable(explain(exc, endpoint.where())) from None
    finally:
        client.close()


def check_settings(settings: Settings) -> None:
    """:func:`check` for ``settings`` (nothing to check in local mode)."""
    if settings.broker_url is not None:
        check(Endpoint.of(settings))
