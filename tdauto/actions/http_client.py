"""The ``http`` action's client side: what is secret in a request, redirects that keep
credentials with their origin, and the opener (connections vetted by ``tdauto.outbound``).

Kept apart from ``generic.py`` (the actions and their params) so each stays small.
"""

from __future__ import annotations

import ssl
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any
from urllib.request import OpenerDirector

from tdauto import outbound
from tdauto.engine.redact import REDACTED, is_secret_key
from tdauto.errors import ActionError

_SECRET_HEADERS = {"authorization", "proxy-authorization", "cookie", "set-cookie"}


def is_secret_header(name: str) -> bool:
    """Authorization, cookies, and any header named like a token, secret, password or key."""
    lower = name.lower()
    return lower in _SECRET_HEADERS or is_secret_key(lower.replace("-", "_"))


def redact_headers(headers: dict[str, str], also: set[str] | None = None) -> dict[str, str]:
    """``headers`` with secret ones (and those named in ``also``) shown as ``***``."""
    hidden = {h.lower() for h in also or ()}
    return {
        k: (REDACTED if (is_secret_header(k) or k.lower() in hidden) and v else v)
        for k, v in headers.items()
    }


def redact_url(url: str) -> str:
    """``url`` with its password and secret-looking query values replaced."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc
    if parts.password:
        netloc = netloc.replace(f":{parts.password}@", f":{REDACTED}@", 1)
    query = parts.query
    if query:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        query = urllib.parse.urlencode(
            [(k, REDACTED if is_secret_key(k) and v else v) for k, v in pairs], safe="*"
        )
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, query=query))


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects, but only to http(s) URLs (never ftp:// or file://)."""

    def __init__(self, private: set[str]) -> None:
        self.private = {name.lower() for name in private}

    def http_error_302(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any
    ) -> Any:
        target = headers.get("location") or headers.get("uri") or ""
        newurl = urllib.parse.urljoin(req.full_url, target)
        if urllib.parse.urlsplit(newurl).scheme.lower() not in ("http", "https"):
            fp.close()
            raise ActionError(f"refusing a redirect to {redact_url(newurl)}", "redirect")
        return super().http_error_302(req, fp, code, msg, headers)

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        """As urllib, but credentials stay with the origin: a redirect to another host or
        from https to http drops Authorization, cookies, token headers and those of
        ``headers_env`` (as requests does for Authorization)."""
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        old, to = urllib.parse.urlsplit(req.full_url), urllib.parse.urlsplit(newurl)
        if new is not None and (old.netloc != to.netloc or old.scheme != to.scheme):
            secret = [k for k in new.headers if is_secret_header(k) or k.lower() in self.private]
            for name in secret:
                del new.headers[name]
        return new

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


def opener(verify_tls: bool, private: set[str], allow: Sequence[str]) -> OpenerDirector:
    """The ``http`` action's opener: redirects as above, connections to vetted addresses only
    (``allow`` is ``TDAUTO_OUTBOUND_ALLOW``; see ``tdauto.outbound``)."""
    context = ssl.create_default_context()
    if not verify_tls:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return outbound.opener(allow, _HttpOnlyRedirects(private), tls=context)
