"""The ``http`` action: one HTTP request, its status and (capped) body.

It uses the standard library (urllib) over ``tdauto.outbound`` (no link-local or cloud
metadata address, checked on the address connected to), follows redirects to http(s) only
(without the credentials when the host or scheme changes), and redacts secrets in its output
and log. Its params are in ``http_params.py``, the client side in ``http_client.py``. Split
from ``tdauto.actions.generic`` (``shell``), which imports it so the two register together.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from http.client import HTTPException
from typing import Any

from tdauto.actions import secrets as task_secrets
from tdauto.actions.context import ActionContext
from tdauto.actions.http_client import opener
from tdauto.actions.http_params import HttpParams, Method
from tdauto.actions.registry import action
from tdauto.errors import ActionError
from tdauto.redact import redact, redact_headers, redact_text, redact_url

USER_AGENT = "tdauto-http/1"


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
        value = task_secrets.read("headers_env", variable, ctx.settings.task_secrets)
        if value is None:
            message = f"headers_env: {variable} (for the {name} header) is not set on this worker"
            raise ActionError(message, "invalid")
        sent[name] = value
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
            client = opener(verify_tls, hidden, ctx.settings.outbound_allow)
            response = client.open(request, timeout=limit)
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


__all__ = ["HttpParams", "http", "redact_headers", "redact_url"]
