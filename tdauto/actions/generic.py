"""Generic actions: ``shell`` (run an allow-listed program) and ``http`` (one HTTP request).

``shell`` is off unless ``TDAUTO_SHELL_ALLOW`` lists the program. It takes an argv list and
never a shell string: no shell is started, so ``;``, ``|``, ``$(...)`` and globs reach the
program as literal arguments. The program is resolved to an absolute path on the worker's
own ``PATH`` before it runs (an ``env`` addition cannot swap it), and it runs through
``ctx.run``: its own process group, stopped on cancel, timeout or the run's deadline.

``http`` uses the standard library (urllib), follows redirects to http(s) only (without the
credentials when the host or scheme changes), and redacts
secrets (``Authorization``, cookies, token and key headers, URL passwords and secret query
values) in its output and log.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from http.client import HTTPException
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from tdauto.actions.context import ActionContext, confine
from tdauto.actions.registry import action
from tdauto.engine.redact import REDACTED, is_secret_key, redact, redact_text
from tdauto.errors import ActionError
from tdauto.settings import Settings
from tdauto.units import parse_duration_s

USER_AGENT = "tdauto-http/1"
OUTPUT_CAP = 256_000  # the most a shell result keeps of a command's output, bytes
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LOADER_VARS = ("LD_", "DYLD_")  # would let a task inject code into an allowed program
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_SECRET_HEADERS = {"authorization", "proxy-authorization", "cookie", "set-cookie"}


# --- shell ------------------------------------------------------------------------------------


def allowed_program(program: str, allow: list[str], resolve: bool = True) -> str:
    """The absolute path ``program`` runs as, if ``TDAUTO_SHELL_ALLOW`` (``allow``) lists it.

    A name is looked up on this process's ``PATH``; it is allowed when the allow list has the
    name itself, or an absolute path that is the same file. An absolute path is allowed when
    it is (or resolves to) a listed path or the file a listed name resolves to. With
    ``resolve=False`` (at validation, possibly on another host) an exact match of the list
    is enough. Raises ValueError naming the setting.
    """
    if not allow:
        raise ValueError(
            "the shell action is off: TDAUTO_SHELL_ALLOW is empty; list the programs it may "
            "run (names or absolute paths), e.g. TDAUTO_SHELL_ALLOW=rsync,/opt/app/bin/migrate"
        )
    if "/" in program and not os.path.isabs(program):
        raise ValueError(
            f"program {program!r} is a relative path; give a name on PATH or an absolute path"
        )
    if not resolve and program in allow:
        return program
    found = program if os.path.isabs(program) else shutil.which(program)
    if found is not None and os.path.isfile(found):
        real = os.path.realpath(found)
        allowed = {os.path.realpath(a) for a in allow if os.path.isabs(a)}
        allowed |= {os.path.realpath(w) for a in allow if "/" not in a if (w := shutil.which(a))}
        if program in allow or real in allowed:
            return found
    elif program in allow:
        raise ValueError(f"program {program!r} is allowed but not found on this host's PATH")
    raise ValueError(
        f"program {program!r} is not allowed: TDAUTO_SHELL_ALLOW lists "
        f"{', '.join(allow)}; add it there to let the shell action run it"
    )


class ShellParams(BaseModel):
    """Params of ``shell``.

    - ``argv``: the program and its arguments, as a list (``["rsync", "-a", "src/", "dst/"]``).
      A string is refused: no shell is used, so there is nothing to split it.
    - ``cwd``: working directory, inside ``TDAUTO_ALLOWED_PATHS`` (default: the data dir; a
      relative path is relative to the data dir).
    - ``env``: variables added to the worker's environment (``LD_*``/``DYLD_*`` refused).
    - ``inherit_env``: start from the worker's environment (default) or from PATH and LANG
      only.
    - ``timeout``: seconds (or "5m") before the command's process group is stopped.
    - ``allow_failure``: a non-zero exit is recorded, not an error.
    - ``max_output``: bytes of output kept in the result (the log keeps the head and tail of
      the output within half of TDAUTO_LOG_MAX_BYTES).
    """

    model_config = ConfigDict(extra="forbid")

    argv: list[str] = Field(min_length=1, description="program and arguments")
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    inherit_env: bool = True
    timeout: float | None = Field(default=None, description="seconds")
    allow_failure: bool = False
    max_output: int = Field(default=64_000, ge=0, le=OUTPUT_CAP)

    @field_validator("argv", mode="before")
    @classmethod
    def _argv_list(cls, value: object) -> object:
        if isinstance(value, str):
            raise ValueError(
                'argv must be a list such as ["rsync", "-a", "src/", "dst/"], not a string: '
                "the shell action never runs a shell, so give each argument as its own item"
            )
        return value

    @field_validator("argv")
    @classmethod
    def _allowed(cls, value: list[str], info: ValidationInfo) -> list[str]:
        if not value[0]:
            raise ValueError("argv[0] (the program) is empty")
        if any("\0" in arg for arg in value):
            raise ValueError("arguments cannot contain NUL characters")
        settings: Settings | None = (info.context or {}).get("settings")
        if settings is not None:
            allowed_program(value[0], settings.shell_allow, resolve=False)
        return value

    @field_validator("cwd")
    @classmethod
    def _cwd(cls, value: str | None, info: ValidationInfo) -> str | None:
        settings = (info.context or {}).get("settings")
        if value is not None and settings is not None:
            confine(settings.data_path / value, settings.confined_paths, "cwd")
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not _ENV_NAME.match(name):
                raise ValueError(f"env: {name!r} is not a valid variable name")
            if name.upper().startswith(_LOADER_VARS):
                raise ValueError(f"env: {name} is refused: it would change what the program is")
            if "\0" in text:
                raise ValueError(f"env: {name}'s value contains a NUL character")
        return value

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout(cls, value: object) -> object:
        return None if value is None else parse_duration_s(value)


def _environment(env: dict[str, str], inherit: bool) -> dict[str, str]:
    base = (
        dict(os.environ)
        if inherit
        else {
            "PATH": os.environ.get("PATH", os.defpath),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
        }
    )
    return base | env


@action("shell", resource_class="cpu", params=ShellParams)
def shell(
    ctx: ActionContext,
    *,
    argv: list[str],
    cwd: str | None = None,
    env: dict[str, str] | None = None,
    inherit_env: bool = True,
    timeout: float | None = None,
    allow_failure: bool = False,
    max_output: int = 64_000,
) -> dict[str, Any]:
    """Run an allow-listed program (argv list, no shell); exit code and capped output."""
    try:
        program = allowed_program(argv[0], ctx.settings.shell_allow)
    except ValueError as exc:
        raise ActionError(f"argv: {exc}", "not_allowed") from exc
    workdir = ctx.confine(ctx.data_dir / cwd, "cwd") if cwd else ctx.data_dir
    if not workdir.is_dir():
        raise ActionError(f"cwd {workdir} is not a directory", "invalid")
    shown = redact([program, *argv[1:]])
    ctx.logger.info("running %s in %s", shlex.join(shown), workdir)
    result = ctx.run(
        [program, *argv[1:]],
        timeout_s=timeout,
        cwd=workdir,
        env=_environment(env or {}, inherit_env),
        check=False,
    )
    output = result.output.encode("utf-8", "replace")
    kept = output[:max_output].decode("utf-8", "ignore")
    ctx.logger.info(
        "%s exited with %d in %.3fs", Path(program).name, result.returncode, result.duration_s
    )
    if result.returncode != 0 and not allow_failure:
        tail = result.output[-500:]
        raise ActionError(f"{Path(program).name} exited with {result.returncode}: {tail}", "exit")
    return {
        "argv": shown,
        "program": program,
        "cwd": str(workdir),
        "exit_code": result.returncode,
        "ok": result.returncode == 0,
        "output": redact_text(kept),
        "output_truncated": len(output) > max_output or result.dropped > 0,
        "duration_s": round(result.duration_s, 3),
    }


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


__all__ = [
    "HttpParams",
    "ShellParams",
    "allowed_program",
    "http",
    "is_secret_header",
    "redact_url",
    "shell",
]
