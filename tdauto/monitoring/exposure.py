"""HTTP surfaces of monitoring (Flower, ``/metrics``): credentials required by default.

Every endpoint asks for basic-auth credentials from the settings. Running without them is
allowed only when bound to the loopback interface *and* asked for explicitly
(``--no-auth-on-localhost``): a dashboard or a metrics port open to the network without a
password is the classic way a scheduler's internals leak. A password shorter than
``MIN_PASSWORD`` characters is refused: basic auth has no lockout, so a short one is guessed.
"""

from __future__ import annotations

import base64
import hmac
import logging
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from pydantic import SecretStr

from tdauto.errors import InvalidInput, TdautoError

log = logging.getLogger(__name__)
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
MIN_PASSWORD = 12  # characters of a Flower or /metrics password, at least
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def credentials(
    what: str,
    env_prefix: str,
    user: str | None,
    password: SecretStr | None,
    address: str,
    no_auth_on_localhost: bool,
    open_hint: str = "pass --no-auth-on-localhost with --address 127.0.0.1",
) -> tuple[str, str] | None:
    """``(user, password)`` to require, or None when running open is allowed (loopback and
    the explicit flag). Raises ``InvalidInput`` naming the settings to set otherwise, and
    ``open_hint``: how to run open with the command at hand, or a password shorter than
    ``MIN_PASSWORD``."""
    if user and password:
        secret = password.get_secret_value()
        if len(secret) < MIN_PASSWORD:
            raise InvalidInput(
                f"{env_prefix}_PASSWORD",
                f"{what} password is {len(secret)} characters; use at least {MIN_PASSWORD} "
                "(for example: openssl rand -hex 16)",
            )
        return user, secret
    if no_auth_on_localhost and address in LOOPBACK:
        return None
    raise InvalidInput(
        f"{env_prefix}_USER",
        f"{what} needs credentials: set {env_prefix}_USER and {env_prefix}_PASSWORD "
        f"(or {open_hint})",
    )


def basic_auth(app: WSGIApp, user: str, password: str, realm: str = "tdauto") -> WSGIApp:
    """Wrap a WSGI app so every request needs ``user:password`` (constant-time compare)."""
    expected = b"Basic " + base64.b64encode(f"{user}:{password}".encode())

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        given = environ.get("HTTP_AUTHORIZATION", "").encode()
        if hmac.compare_digest(given, expected):
            return app(environ, start_response)
        start_response(
            "401 Unauthorized",
            [
                ("WWW-Authenticate", f'Basic realm="{realm}"'),
                ("Content-Type", "text/plain; charset=utf-8"),
            ],
        )
        return [b"credentials required\n"]

    return guarded


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)


class HttpServer:
    """A small threaded WSGI server in a background thread (``stop()`` ends it)."""

    def __init__(
        self, app: WSGIApp, address: str, port: int, setting: str = "TDAUTO_METRICS_PORT"
    ) -> None:
        """Bind now, so a taken port is one line naming ``setting`` (the variable that picks
        the port), not a traceback."""
        try:
            self._server = make_server(
                address, port, app, server_class=_ThreadingServer, handler_class=_QuietHandler
            )
        except OSError as exc:
            raise TdautoError(
                f"cannot listen on {address}:{port} ({exc.strerror or exc}): "
                f"set {setting} to a free port"
            ) from exc
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="tdauto-http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> HttpServer:
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
