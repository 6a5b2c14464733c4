"""The ``alert`` action: evaluate rules, send what is new through the notifiers, keep history.

Rules, notifiers, cooldown and de-duplication live in ``tdauto.monitoring.alerts``; this
module is the action's params model (checked at ``create_task``: a webhook without
``TDAUTO_ALERT_WEBHOOK_SECRET`` or an email without ``TDAUTO_SMTP_HOST`` is refused then, not
at the first alert) and its handler.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from tdauto import outbound
from tdauto.actions.context import ActionContext
from tdauto.actions.registry import action
from tdauto.monitoring.alerts import Duration, Notifier, Rule, dispatch, evaluate


class AlertParams(BaseModel):
    """Params of ``alert``.

    - ``rules``: what to check (see ``docs/process-monitoring.md``), e.g.
      ``{"kind": "metric", "metric": "disk_percent", "above": 90, "for": "10m"}``,
      ``{"kind": "failed", "within": "15m"}``, ``{"kind": "missed"}``,
      ``{"kind": "late", "after": "5m"}``, ``{"kind": "stale", "task": "Daily Backup",
      "max_age": "26h"}``.
    - ``notify``: where to send (default the log): ``{"type": "webhook", "url": ...}``,
      ``{"type": "email", "to": ["ops@example.com"]}``.
    - ``cooldown``: an alert with the same key is not sent again within it (default 1h).
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    rules: list[Rule] = Field(min_length=1)
    notify: list[Notifier] = Field(default_factory=lambda: [Notifier(type="log")], min_length=1)
    cooldown_s: Duration = Field(default=3600.0, alias="cooldown")
    timeout_s: Duration = Field(default=10.0, alias="timeout")

    @field_validator("notify")
    @classmethod
    def _configured(cls, value: list[Notifier], info: ValidationInfo) -> list[Notifier]:
        settings = (info.context or {}).get("settings")
        if settings is None:
            return value
        for n in value:
            if n.type == "webhook" and settings.alert_webhook_secret is None:
                raise ValueError(
                    "a webhook notifier needs TDAUTO_ALERT_WEBHOOK_SECRET (signing key)"
                )
            if n.type == "webhook" and not n.url:
                raise ValueError("a webhook notifier needs a url")
            if n.type == "webhook" and n.url:
                host = urlsplit(n.url).hostname
                outbound.check_host("notify: webhook url", host, settings.outbound_allow)
            if n.type == "email" and (settings.smtp_host is None or not n.to):
                raise ValueError("an email notifier needs TDAUTO_SMTP_HOST and a 'to' list")
        return value


@action("alert", resource_class="cpu", params=AlertParams, process_type="monitoring")
def alert(
    ctx: ActionContext,
    *,
    rules: list[Any],
    notify: list[Notifier],
    cooldown_s: float = 3600.0,
    timeout_s: float = 10.0,
) -> dict[str, Any]:
    """Check alert rules and notify (log, signed webhook, email) with cooldown."""
    found = evaluate(ctx.store, rules)
    result = dispatch(ctx.store, ctx.settings, found, notify, cooldown_s, ctx.logger, timeout_s)
    ctx.logger.info(
        "%d finding(s): %d sent, %d in cooldown",
        len(found),
        len(result["sent"]),
        len(result["suppressed"]),
    )
    return {
        "findings": len(found),
        "sent": [
            {"key": a["key"], "summary": a["summary"], "delivered": a["delivered"]}
            for a in result["sent"]
        ],
        "suppressed": [a["key"] for a in result["suppressed"]],
    }
