"""The generic ``http`` action: one HTTP(S) request, its status, latency and capped body.

It uses the standard library (urllib), follows redirects to http(s) only (without the
credentials when the host or scheme changes), and redacts secrets (``Authorization``,
cookies, token and key headers, URL passwords and secret query values) in its output and log.
"""

from __future__ import annotations

import json
import os
import re
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from http.client import HTTPException
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tdauto.actions.context import ActionContext
from tdauto.actions.registry import action
from tdauto.engine.redact import REDACTED, is_secret_key, redact, redact_text
from tdauto.errors import ActionError
from tdauto.units import parse_duration_s

USER_AGENT = "tdauto-http/1"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_SECRET_HEADERS = {"authorization", "proxy-authorization", "cookie", "set-cookie"}

# --- http -------------------------------------------------------------------------------------

Method = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


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


class HttpParams(BaseModel):
    """Params of ``http``.

    - ``method``: GET (default), HEAD, POST, PUT, PATCH, DELETE or OPTIONS.
    - ``url``: an ``http://`` or ``https://`` URL.
    - ``headers``: request headers; secrets among them are redacted in the output and log.
    - ``headers_env``: headers whose value is read from the worker's environment
      (``{"Authorization": "DEPLOY_API_AUTH"}``), so a secret stays out of the task; their
      values are always redacted.
    - ``json``: a body sent as JSON (``Content-Type: application/json`` unless given).
    - ``expected_status``: a status or a list of them; default any 2xx.
    - ``timeout``: seconds (or "30s") for connecting and for each read; default 10.
    - ``max_body``: bytes of the response body kept in the result.
    - ``verify_tls``: check the server's certificate (default true).
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    method: Method = "GET"
    url: str = Field(min_length=1)
    headers: dict[str, str] = Field(default_factory=dict)
    headers_env: dict[str, str] = Field(default_factory=dict, description="header -> env var")
    json_body: Any = Field(default=None, alias="json", description="JSON request body")
    expected_status: list[int] | None = Field(default=None, description="default: 200-299")
    timeout: float = Field(default=10.0, le=3600, description="seconds")
    max_body: int = Field(default=64_000, ge=0, le=10_000_000)
    verify_tls: bool = True

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urllib.parse.urlsplit(value)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"url {redact_url(value)!r} must be an http:// or https:// URL with a host"
            )
        if any(c in value for c in "\r\n "):
            raise ValueError("url must not contain spaces or line breaks; percent-encode them")
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not _HEADER_NAME.match(name):
                raise ValueError(f"headers: {name!r} is not a valid header name")
            if "\r" in text or "\n" in text:
                raise ValueError(f"headers: the value of {name} contains a line break")
        return value

    @field_validator("headers_env")
    @classmethod
    def _headers_env(cls, value: dict[str, str]) -> dict[str, str]:
        for name, variable in value.items():
            if not _HEADER_NAME.match(name):
                raise ValueError(f"headers_env: {name!r} is not a valid header name")
            if not _ENV_NAME.match(variable):
                raise ValueError(f"headers_env: {variable!r} is not a valid variable name")
        return value

    @field_validator("expected_status", mode="before")
    @classmethod
    def _status_list(cls, value: object) -> object:
        return [value] if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("expected_status")
    @classmethod
    def _status_range(cls, value: list[int] | None) -> list[int] | None:
        if value is not None:
            if not value:
                raise ValueError("expected_status is empty; omit it to accept any 2xx")
            bad = [s for s in value if not 100 <= s <= 599]
            if bad:
                raise ValueError(f"expected_status: {bad} are not HTTP statuses (100-599)")
        return value

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout(cls, value: object) -> object:
        return parse_duration_s(value)

    @model_validator(mode="after")
    def _body(self) -> HttpParams:
        if self.json_body is not None and self.method in ("GET", "HEAD"):
            raise ValueError(f"json: a {self.method} request has no body; use POST, PUT or PATCH")
        return self


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


def _opener(verify_tls: bool, private: set[str]) -> urllib.request.OpenerDirector:
    context = ssl.create_default_context()
    if not verify_tls:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return urllib.request.build_opener(
        _HttpOnlyRedirects(private), urllib.request.HTTPSHandler(context=context)
    )


def _decode(raw: bytes, content_type: str) -> tuple[str, Any]:
    """The body as text and, when it is JSON, parsed (None otherwise)."""
    match = re.search(r"charset=([\w-]+)", content_type, re.I)
    try:
        text = raw.decode(match.group(1) if match else "utf-8", "replace")
    except LookupError:
        text = raw.decode("utf-8", "replace")
    parsed = None
    if "json" in content_type.lower() or text.lstrip()[:1] in ("{", "["):
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
    return text, parsed


@action("http", resource_class="cpu", params=HttpParams)
def http(
    ctx: ActionContext,
    *,
    method: Method = "GET",
    url: str,
    headers: dict[str, str] | None = None,
    headers_env: dict[str, str] | None = None,
    json_body: Any = None,
    expected_status: list[int] | None = None,
    timeout: float = 10.0,
    max_body: int = 64_000,
    verify_tls: bool = True,
) -> dict[str, Any]:
    """One HTTP(S) request; its status, latency and (capped) body; fails on an unexpected
    status."""
    sent = {"User-Agent": USER_AGENT, **(headers or {})}
    for name, variable in (headers_env or {}).items():
        if variable not in os.environ:
            raise ActionError(
                f"headers_env: {variable} (for the {name} header) is not set on this worker",
                "invalid",
            )
        sent[name] = os.environ[variable]
    hidden = set(headers_env or {})
    data = None
    if json_body is not None:
        data = json.dumps(json_body).encode("utf-8")
        if not any(k.lower() == "content-type" for k in sent):
            sent["Content-Type"] = "application/json"
    shown_url = redact_url(url)
    remaining = ctx.remaining_s()
    limit = timeout if remaining is None else max(0.1, min(timeout, remaining))
    request = urllib.request.Request(url, data=data, headers=sent, method=method)
    ctx.logger.info("%s %s headers %s", method, shown_url, redact_headers(sent, hidden))
    started = time.monotonic()
    try:
        try:
            response = _opener(verify_tls, hidden).open(request, timeout=limit)
        except urllib.error.HTTPError as exc:  # a status >= 400 is still an answer
            response = exc
        with response:
            raw = response.read(max_body + 1) if method != "HEAD" else b""
            status = int(response.status or 0)
            reply_headers = dict(response.headers.items())
    except TimeoutError as exc:
        raise ActionError(f"{method} {shown_url} timed out after {limit:g}s", "timeout") from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise ActionError(
                f"{method} {shown_url} timed out after {limit:g}s", "timeout"
            ) from exc
        raise ActionError(f"{method} {shown_url} failed: {exc.reason}", "connection") from exc
    except (HTTPException, OSError) as exc:
        raise ActionError(f"{method} {shown_url} failed: {exc}", "connection") from exc
    latency_ms = round((time.monotonic() - started) * 1000, 1)
    text, parsed = _decode(raw[:max_body], reply_headers.get("Content-Type", ""))
    ctx.logger.info("%s %s -> %d in %.1f ms", method, shown_url, status, latency_ms)
    ok = status in expected_status if expected_status else 200 <= status <= 299
    if not ok:
        wanted = ", ".join(map(str, expected_status)) if expected_status else "200-299"
        raise ActionError(
            f"{method} {shown_url} returned {status}, expected {wanted}: {redact_text(text[:300])}",
            "status",
        )
    return {
        "method": method,
        "url": shown_url,
        "status": status,
        "latency_ms": latency_ms,
        "request_headers": redact_headers(sent, hidden),
        "headers": redact_headers(reply_headers),
        "body": redact_text(text),
        "body_truncated": len(raw) > max_body,
        "json": redact(parsed) if parsed is not None else None,
    }


__all__ = ["HttpParams", "http", "is_secret_header", "redact_headers", "redact_url"]
