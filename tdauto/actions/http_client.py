"""The ``http`` action's client side: redirects that keep credentials with their origin, and
the opener (connections vetted by ``tdauto.outbound``). What is secret is ``tdauto.redact``'s."""

from __future__ import annotations

import ssl
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any
from urllib.request import OpenerDirector

from tdauto import outbound
from tdauto.errors import ActionError
from tdauto.redact import is_secret_key, redact_url


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
            secret = [k for k in new.headers if is_secret_key(k) or k.lower() in self.private]
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
