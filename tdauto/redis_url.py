"""The forms ``TDAUTO_BROKER_URL`` takes, checked once, before anything connects.

redis-py and kombu read a URL leniently: ``redis://host/abc`` silently means database 0,
so two deployments that meant different databases share one, broker lists included. This
module parses the URL the way both of them will, and refuses what they would misread, with
one line naming ``TDAUTO_BROKER_URL`` and the fix. It imports only the stdlib, since
``settings.py`` uses it.

Forms: ``redis://[:password@]host[:port][/db]``, ``rediss://`` (TLS), ``unix://[:password@]
/path/to.sock[?db=N]`` and, for Redis Sentinel, ``sentinel://[:password@]host:port[/db];
sentinel://host:port;...`` (the password and database given once, on the first; the master's
name and the sentinels' own password are ``TDAUTO_SENTINEL_MASTER`` and
``TDAUTO_SENTINEL_PASSWORD``).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

VARIABLE = "TDAUTO_BROKER_URL"
SCHEMES = ("redis", "rediss", "unix", "sentinel")
DEFAULT_PORT = {"redis": 6379, "rediss": 6379, "sentinel": 26379}


@dataclass(frozen=True)
class RedisURL:
    """A checked ``TDAUTO_BROKER_URL``: where it points and how to log it."""

    url: str
    scheme: str
    hosts: tuple[tuple[str, int], ...]  # the server, or every sentinel; empty for unix://
    db: int
    password: str | None
    username: str | None
    path: str | None  # the socket of unix://

    @property
    def sentinel(self) -> bool:
        return self.scheme == "sentinel"

    def where(self) -> str:
        """``HOST:PORT`` (or the socket path, or every sentinel), for messages."""
        if self.path is not None:
            return self.path
        return ",".join(f"{host}:{port}" for host, port in self.hosts)

    def redacted(self) -> str:
        """The URL with its password replaced by ``***``: safe for logs and errors."""
        return redact(self.url)


def _bad(url: str, problem: str, fix: str) -> ValueError:
    return ValueError(f"{VARIABLE}: {problem} in {redact(url)!r}; {fix}")


def redact(url: str) -> str:
    """``url`` (every ``;``-separated part) with any password shown as ``***``."""
    parts = []
    for part in url.split(";"):
        scheme, sep, rest = part.partition("://")
        netloc, slash, tail = rest.partition("/")
        if "@" in netloc:
            userinfo, _, hostport = netloc.rpartition("@")
            user = userinfo.partition(":")[0]
            netloc = f"{user}:***@{hostport}"
        parts.append(f"{scheme}{sep}{netloc}{slash}{tail}")
    return ";".join(parts)


def _db(url: str, text: str) -> int:
    text = unquote(text).strip("/")
    if text == "":
        return 0
    if not text.isdigit():
        raise _bad(
            url,
            f"the database {text!r} is not a number",
            "end the URL with a database number such as /0 (redis-py would use 0 silently)",
        )
    return int(text)


def _host_port(url: str, part: str, scheme: str) -> tuple[str, int]:
    split = urlsplit(part)
    try:
        port = split.port
    except ValueError:
        raise _bad(
            url, "the port is not a number", "write host:port, e.g. localhost:6379"
        ) from None
    if not split.hostname:
        raise _bad(url, "no host", f"write {scheme}://host:port")
    return split.hostname, port or DEFAULT_PORT[scheme]


def parse(url: str) -> RedisURL:
    """``url`` checked; ``ValueError`` (one line naming ``TDAUTO_BROKER_URL``) when bad."""
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme not in SCHEMES:
        raise _bad(
            url,
            "unsupported scheme",
            "use redis://host:port/db, rediss://, unix:///path.sock or "
            "sentinel://host:port;sentinel://host:port (or leave it unset for local mode)",
        )
    first = urlsplit(url.split(";")[0])
    password = unquote(first.password) if first.password else None
    username = unquote(first.username) if first.username else None
    query = parse_qs(first.query)
    if "db" in query:
        db = _db(url, query["db"][0])
    elif scheme == "unix":
        db = 0
    else:
        db = _db(url, first.path)
    if scheme == "unix":
        if not first.path:
            raise _bad(url, "no socket path", "write unix:///path/to/redis.sock")
        return RedisURL(url, scheme, (), db, password, username, first.path)
    parts = [p for p in url.split(";") if p.strip()]
    if scheme != "sentinel" and len(parts) > 1:
        raise _bad(url, "several servers", "list several servers only as sentinel://...;...")
    hosts = []
    for part in parts:
        if urlsplit(part).scheme.lower() != scheme:
            raise _bad(url, "a part that is not sentinel://", "start every part with sentinel://")
        hosts.append(_host_port(url, part, scheme))
    return RedisURL(url, scheme, tuple(hosts), db, password, username, None)
