"""Params of the ``http`` action (``HttpParams``), checked when the task is created: the URL
(http(s), a host, no literal metadata address: ``tdauto.outbound``), headers, the variables
``headers_env`` names (``tdauto.actions.secrets``), the body and the expected statuses.

Kept apart from ``generic.py`` (the handlers) so each stays small, as ``deploy_params.py``.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from tdauto import outbound
from tdauto.actions import secrets as task_secrets
from tdauto.redact import redact_url
from tdauto.settings import Settings
from tdauto.units import parse_duration_s

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

Method = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


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
    def _url(cls, value: str, info: ValidationInfo) -> str:
        parts = urllib.parse.urlsplit(value)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"url {redact_url(value)!r} must be an http:// or https:// URL with a host"
            )
        if any(c in value for c in "\r\n "):
            raise ValueError("url must not contain spaces or line breaks; percent-encode them")
        settings: Settings | None = (info.context or {}).get("settings")
        if settings is not None:
            outbound.check_host("url", parts.hostname, settings.outbound_allow)
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
    def _headers_env(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        settings: Settings | None = (info.context or {}).get("settings")
        for name, variable in value.items():
            if not _HEADER_NAME.match(name):
                raise ValueError(f"headers_env: {name!r} is not a valid header name")
            if not _ENV_NAME.match(variable):
                raise ValueError(f"headers_env: {variable!r} is not a valid variable name")
            if settings is not None:
                task_secrets.check_name("headers_env", variable, settings.task_secrets)
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
