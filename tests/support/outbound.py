"""A stub resolver and a record of connections, for the outbound tests.

``Resolver`` answers ``socket.getaddrinfo`` for the names it is given (a list of answers, one
per call, the last repeated: so a name can resolve to a public address once and to the
metadata address after, as in DNS rebinding) and passes other names to the real resolver.
``Connections`` records every ``socket.connect`` of this process, and still connects.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest

METADATA = "169.254.169.254"


class Resolver:
    """``socket.getaddrinfo`` with stub answers; ``calls[name]`` counts the lookups."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.calls: dict[str, int] = {}
        self._real = socket.getaddrinfo
        monkeypatch.setattr(socket, "getaddrinfo", self)

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        if host not in self.answers:
            return self._real(host, port, *args, **kwargs)
        count = self.calls.get(host, 0)
        self.calls[host] = count + 1
        choices = self.answers[host]
        address = choices[min(count, len(choices) - 1)]
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sockaddr = (address, int(port or 0), 0, 0) if ":" in address else (address, int(port or 0))
        return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr)]


class Connections:
    """Every address this process's sockets ``connect`` to, in order."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.addresses: list[str] = []
        real = socket.socket.connect
        seen = self.addresses

        def connect(sock: socket.socket, address: Any) -> None:
            seen.append(str(address[0]) if isinstance(address, tuple) else str(address))
            real(sock, address)

        monkeypatch.setattr(socket.socket, "connect", connect)
