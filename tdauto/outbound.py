"""Outbound connections that a task aims (``http``, health checks, verify) or that notifiers
make, vetted so they cannot reach the host's link-local or cloud metadata services.

A task that can name any URL could read ``http://169.254.169.254/`` (the instance's cloud
credentials) and have its own output show them. So link-local and metadata addresses
(``BLOCKED``) are refused unless ``TDAUTO_OUTBOUND_ALLOW`` lists their network. The check is on
the address actually connected to: a name is resolved once, every address it resolves to is
vetted, and the socket connects to a vetted address (so a name that resolves to a public
address when checked and to 169.254.169.254 when used, DNS rebinding, does not pass). TLS keeps
the name for SNI and certificate checks, HTTP for its ``Host`` header. Literal addresses are
also refused when the task is created (``check_host``).

An HTTP(S) proxy from the environment is what gets connected to, so it is the address vetted;
such a proxy must refuse metadata addresses itself.
"""

from __future__ import annotations

import functools
import http.client
import ipaddress
import socket
import ssl
import urllib.request
from collections.abc import Sequence
from typing import Any

from tdauto.errors import ActionError

SETTING = "TDAUTO_OUTBOUND_ALLOW"
BLOCKED = (
    ipaddress.ip_network("169.254.0.0/16"),  # IPv4 link-local: AWS, GCP, Azure, ... metadata
    ipaddress.ip_network("fe80::/10"),  # IPv6 link-local
    ipaddress.ip_network("fd00:ec2::254/128"),  # AWS metadata over IPv6
)
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class OutboundRefused(ActionError):
    """A connection to a blocked address was refused before it was attempted."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "not_allowed")


def _address(text: str) -> Address | None:
    """``text`` as an IP address (IPv6 scope and brackets dropped, IPv4-mapped and NAT64
    addresses unwrapped, the old forms ``inet_aton`` reads such as ``2852039166``), or None
    for a name."""
    text = text.strip("[]").split("%", 1)[0]
    try:
        ip: Address = ipaddress.ip_address(text)
    except ValueError:
        try:
            ip = ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip in _NAT64:  # 64:ff9b::a9fe:a9fe reaches 169.254.169.254 through a NAT64 gateway
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def refusal(address: str, allow: Sequence[str]) -> str | None:
    """Why connecting to IP ``address`` is refused, or None when it is not."""
    ip = _address(address)
    if ip is None or not any(ip in net for net in BLOCKED):
        return None
    if any(ip in ipaddress.ip_network(net, strict=False) for net in allow):
        return None
    return (
        f"{ip} is a link-local or cloud metadata address, which tasks, checks and notifiers "
        f"may not reach; if this host must, add its network to {SETTING} (e.g. {SETTING}="
        f"{ip}/{ip.max_prefixlen})"
    )


def check_host(field: str, host: str | None, allow: Sequence[str]) -> None:
    """At validation: ValueError naming ``field`` when ``host`` is a refused literal address
    (names are checked when they are resolved)."""
    reason = None if not host else refusal(host, allow)
    if reason is not None:
        raise ValueError(f"{field}: {reason}")


def resolve(host: str, port: int, allow: Sequence[str]) -> list[Any]:
    """``getaddrinfo`` of ``host`` (TCP), once; OutboundRefused if any address is refused."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    for *_, sockaddr in infos:
        reason = refusal(str(sockaddr[0]), allow)
        if reason is not None:
            named = "" if _address(host) is not None else f"{host} resolves to {sockaddr[0]}; "
            raise OutboundRefused(named + reason)
    return infos


def connect(
    host: str,
    port: int,
    timeout: object,
    allow: Sequence[str],
    source_address: Any = None,
) -> socket.socket:
    """A TCP socket connected to a vetted address of ``host`` (as
    ``socket.create_connection``; ``timeout`` None blocks, a non-number keeps the default)."""
    error: OSError | None = None
    for family, kind, proto, _, sockaddr in resolve(host, port, allow):
        sock = socket.socket(family, kind, proto)
        try:
            if timeout is None or isinstance(timeout, int | float):
                sock.settimeout(timeout)
            if source_address is not None:
                sock.bind(source_address)
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            error = exc
            sock.close()
    raise error or OSError(f"{host}: no address to connect to")


# --- urllib ------------------------------------------------------------------------------------


def _creator(allow: Sequence[str]) -> Any:
    """What ``http.client`` calls for its socket (``socket.create_connection``'s signature)."""
    kept = tuple(allow)

    def create(address: tuple[str, int], timeout: object, source: Any = None) -> socket.socket:
        return connect(address[0], address[1], timeout, kept, source)

    return create


class _VettedHTTPConnection(http.client.HTTPConnection):
    """``HTTPConnection`` whose socket goes to a vetted address (its ``Host`` header, made
    from ``self.host``, stays the name)."""

    def __init__(self, *args: Any, outbound_allow: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = _creator(outbound_allow)


class _VettedHTTPSConnection(http.client.HTTPSConnection):
    """The same for HTTPS: ``HTTPSConnection.connect`` wraps the vetted socket with the name
    as SNI and for the certificate check."""

    def __init__(self, *args: Any, outbound_allow: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = _creator(outbound_allow)


class _VettedHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, allow: Sequence[str]) -> None:
        super().__init__()
        self.allow = tuple(allow)

    def http_open(self, req: urllib.request.Request) -> Any:
        return self.do_open(
            functools.partial(_VettedHTTPConnection, outbound_allow=self.allow), req
        )


class _VettedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, allow: Sequence[str], context: ssl.SSLContext | None) -> None:
        super().__init__(context=context)
        self.allow = tuple(allow)
        self.tls = context

    def https_open(self, req: urllib.request.Request) -> Any:
        factory = functools.partial(_VettedHTTPSConnection, outbound_allow=self.allow)
        return self.do_open(factory, req, context=self.tls)


def opener(
    allow: Sequence[str], *handlers: urllib.request.BaseHandler, tls: ssl.SSLContext | None = None
) -> urllib.request.OpenerDirector:
    """``urllib.request.build_opener(*handlers)`` whose HTTP and HTTPS connections (redirects
    too) go to vetted addresses only; ``tls`` is the HTTPS context (default: verified)."""
    return urllib.request.build_opener(
        *handlers, _VettedHTTPHandler(allow), _VettedHTTPSHandler(allow, tls)
    )


__all__ = [
    "BLOCKED",
    "OutboundRefused",
    "check_host",
    "connect",
    "opener",
    "refusal",
    "resolve",
]
