"""Where alerts go: the log, a webhook (JSON, signed with HMAC-SHA256) and email (SMTP).

Webhook signature: ``X-Tdauto-Signature: sha256=<hex>`` where ``<hex>`` is
``HMAC-SHA256(TDAUTO_ALERT_WEBHOOK_SECRET, "<X-Tdauto-Timestamp>.<body>")``; the timestamp
is in the signed text so a receiver can refuse a replayed request (as Stripe and Slack do).
:func:`verify` is what a Python receiver runs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import smtplib
import socket
import ssl
import time
import urllib.request
from collections.abc import Sequence
from email.message import EmailMessage
from typing import Any

from tdauto import outbound
from tdauto.settings import Settings

SIGNATURE_HEADER = "X-Tdauto-Signature"
TIMESTAMP_HEADER = "X-Tdauto-Timestamp"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(
    secret: str, timestamp: str, body: bytes, signature: str, max_age_s: float = 300.0
) -> bool:
    """True when ``signature`` is ours for this body and timestamp, and the timestamp is
    fresh (within ``max_age_s``)."""
    try:
        fresh = abs(time.time() - float(timestamp)) <= max_age_s
    except ValueError:
        return False
    return fresh and hmac.compare_digest(sign(secret, timestamp, body), signature)


def send_log(logger: logging.Logger, alert: dict[str, Any]) -> None:
    level = logging.ERROR if alert["severity"] == "critical" else logging.WARNING
    logger.log(level, "ALERT [%s] %s: %s", alert["severity"], alert["rule"], alert["summary"])


def send_webhook(url: str, alert: dict[str, Any], settings: Settings, timeout_s: float) -> int:
    """POST the alert as JSON; returns the HTTP status (raises on a non-2xx answer)."""
    if settings.alert_webhook_secret is None:
        raise ValueError("set TDAUTO_ALERT_WEBHOOK_SECRET to sign webhooks")
    body = json.dumps(alert, sort_keys=True, default=str).encode()
    timestamp = str(int(time.time()))
    request = urllib.request.Request(url, data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    request.add_header("User-Agent", "tdauto-alerts")
    request.add_header(TIMESTAMP_HEADER, timestamp)
    request.add_header(
        SIGNATURE_HEADER, sign(settings.alert_webhook_secret.get_secret_value(), timestamp, body)
    )
    client = outbound.opener(settings.outbound_allow)
    with client.open(request, timeout=timeout_s) as response:
        return int(response.status)


def send_email(to: list[str], alert: dict[str, Any], settings: Settings, timeout_s: float) -> None:
    """One message to ``to`` through ``TDAUTO_SMTP_HOST`` (STARTTLS, SSL or a plain relay)."""
    if settings.smtp_host is None:
        raise ValueError("set TDAUTO_SMTP_HOST to send alert emails")
    message = EmailMessage()
    message["Subject"] = f"[tdauto] {alert['severity']}: {alert['summary']}"
    message["From"] = settings.smtp_from
    message["To"] = ", ".join(to)
    lines = [alert["summary"], "", f"rule: {alert['rule']} ({alert['kind']})"]
    lines += [f"{k}: {v}" for k, v in sorted(alert.get("details", {}).items())]
    lines += ["", f"at: {alert['at']}", f"key: {alert['key']}"]
    message.set_content("\n".join(lines))
    context = ssl.create_default_context()
    smtp: smtplib.SMTP
    allow = settings.outbound_allow
    if settings.smtp_security == "ssl":
        smtp = _VettedSMTPSSL(
            allow, settings.smtp_host, settings.smtp_port, timeout=timeout_s, context=context
        )
    else:
        smtp = _VettedSMTP(allow, settings.smtp_host, settings.smtp_port, timeout=timeout_s)
    with smtp:
        if settings.smtp_security == "starttls":
            smtp.starttls(context=context)
        if settings.smtp_user and settings.smtp_password:
            smtp.login(settings.smtp_user, settings.smtp_password.get_secret_value())
        smtp.send_message(message)


class _VettedSMTP(smtplib.SMTP):
    """SMTP whose socket goes to a vetted address (``tdauto.outbound``); STARTTLS and the
    SSL variant keep the host name for SNI and the certificate."""

    def __init__(self, allow: Sequence[str], *args: Any, **kwargs: Any) -> None:
        self.outbound_allow = tuple(allow)  # before __init__, which connects
        super().__init__(*args, **kwargs)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return outbound.connect(host, port, timeout, self.outbound_allow, self.source_address)


class _VettedSMTPSSL(smtplib.SMTP_SSL, _VettedSMTP):
    """SMTP over TLS: ``SMTP_SSL._get_socket`` wraps the socket of ``_VettedSMTP``."""

    def __init__(self, allow: Sequence[str], *args: Any, **kwargs: Any) -> None:
        self.outbound_allow = tuple(allow)
        smtplib.SMTP_SSL.__init__(self, *args, **kwargs)
