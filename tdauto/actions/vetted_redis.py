"""redis-py clients whose sockets go to vetted addresses (``tdauto.outbound``).

redis-py resolves the host and connects in ``Connection._connect``; these connection classes
do it through ``outbound.connect`` instead, so a task's Redis URL cannot reach a metadata
address, even through a name that resolves to one. TLS (``rediss://``) still wraps the socket
with the URL's host name for SNI and the certificate check (``SSLConnection._connect`` calls
this class's ``_connect`` for the socket).
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Any

import redis
from redis.connection import Connection, SSLConnection

from tdauto import outbound


class VettedConnection(Connection):
    """A redis-py ``Connection`` that connects only to addresses ``outbound`` lets through."""

    def __init__(self, *, outbound_allow: Sequence[str] = (), **kwargs: Any) -> None:
        self.outbound_allow = tuple(outbound_allow)
        super().__init__(**kwargs)

    def _connect(self) -> socket.socket:
        sock = outbound.connect(
            self.host, self.port, self.socket_connect_timeout, self.outbound_allow
        )
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.socket_keepalive:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                for option, value in self.socket_keepalive_options.items():
                    sock.setsockopt(socket.IPPROTO_TCP, option, value)
            sock.settimeout(self.socket_timeout)
        except OSError:
            sock.close()
            raise
        return sock


class VettedSSLConnection(SSLConnection, VettedConnection):
    """TLS over a vetted socket (MRO: ``SSLConnection._connect`` -> ``VettedConnection``)."""


def client(allow: Sequence[str], *, ssl: bool = False, **kwargs: Any) -> redis.Redis:
    """``redis.Redis(**kwargs)`` (host, port, db, username, password, timeouts, retry) over
    vetted connections; ``allow`` is ``TDAUTO_OUTBOUND_ALLOW``."""
    kind = VettedSSLConnection if ssl else VettedConnection
    pool = redis.ConnectionPool(connection_class=kind, outbound_allow=tuple(allow), **kwargs)
    return redis.Redis(connection_pool=pool)
