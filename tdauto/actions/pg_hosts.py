"""The hosts a PostgreSQL connection string names, and the same string pinned to vetted
addresses (``tdauto.outbound``), for the client programs a task runs (``psql``, ``pg_dump``).

libpq resolves ``host`` itself, so a name could resolve to a metadata address when the program
runs. Instead each host is resolved here once, every address vetted, and the first one given
to libpq as ``hostaddr`` (libpq then connects to that address and keeps ``host`` for TLS and
``.pgpass``). A conninfo that already has ``hostaddr`` has those addresses vetted. Unix-socket
hosts (a path) are not network connections and are left alone.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from urllib.parse import parse_qsl, unquote, urlsplit

from tdauto import outbound

_PAIR = re.compile(r"\s*(\w+)\s*=\s*('(?:[^'\\]|\\.)*'|\S*)")
_DEFAULT_PORT = 5432


def _pairs(conninfo: str) -> dict[str, str]:
    """The ``host``, ``hostaddr`` and ``port`` a DSN (URI or ``key=value``) gives."""
    found: dict[str, str] = {}
    if conninfo.startswith(("postgresql://", "postgres://")):
        parts = urlsplit(conninfo)
        netloc = parts.netloc.rsplit("@", 1)[-1]
        hosts, ports = [], []
        for item in netloc.split(",") if netloc else []:
            match = re.match(r"^(\[[^\]]*\]|[^:]*)(?::(\d*))?$", item)
            host, port = (match.group(1), match.group(2) or "") if match else (item, "")
            hosts.append(unquote(host.strip("[]")))
            ports.append(port)
        if hosts:
            found["host"], found["port"] = ",".join(hosts), ",".join(ports)
        found |= {k: v for k, v in parse_qsl(parts.query) if k in ("host", "hostaddr", "port")}
        return found
    for key, value in _PAIR.findall(conninfo):
        if value.startswith("'"):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        found[key] = value
    return found


def network_hosts(conninfo: str) -> tuple[list[str], list[str]]:
    """The TCP hosts (names or addresses) and the ``hostaddr`` addresses ``conninfo`` names,
    the worker's ``PGHOST``/``PGHOSTADDR`` standing in for what it leaves out."""
    pairs = _pairs(conninfo)
    hosts = (pairs.get("host") or os.environ.get("PGHOST", "")).split(",")
    addrs = (pairs.get("hostaddr") or os.environ.get("PGHOSTADDR", "")).split(",")
    return [h for h in hosts if h and not h.startswith(("/", "@"))], [a for a in addrs if a]


def check(field: str, conninfo: str, allow: Sequence[str]) -> None:
    """At validation: ValueError naming ``field`` if a literal address in ``conninfo`` is
    refused (names are vetted when the connection is made)."""
    hosts, addrs = network_hosts(conninfo)
    for host in [*hosts, *addrs]:
        outbound.check_host(field, host, allow)


def vetted(conninfo: str, allow: Sequence[str]) -> str:
    """``conninfo`` with ``hostaddr`` set to vetted addresses of its hosts; raises
    ``outbound.OutboundRefused`` (before any connection) when one is refused."""
    pairs = _pairs(conninfo)
    hosts, addrs = network_hosts(conninfo)
    if addrs:
        for address in addrs:
            outbound.resolve(address, _DEFAULT_PORT, allow)
        return conninfo
    if not hosts:
        return conninfo  # a Unix socket
    pinned = []
    for host in (pairs.get("host") or os.environ.get("PGHOST", "")).split(","):
        if not host or host.startswith(("/", "@")):
            pinned.append("")
        else:
            pinned.append(str(outbound.resolve(host, _DEFAULT_PORT, allow)[0][4][0]))
    value = ",".join(pinned)
    if conninfo.startswith(("postgresql://", "postgres://")):
        glue = "&" if urlsplit(conninfo).query else "?"
        return f"{conninfo}{glue}hostaddr={value}"
    return f"{conninfo} hostaddr={value}"
