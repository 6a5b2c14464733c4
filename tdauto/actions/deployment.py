"""Deployment actions: ``validate``, ``deploy``, ``verify`` and ``rollback``.

Importing this module registers them. They work on release directories as Capistrano lays
them out (``releases/<id>``, a ``current`` symlink switched atomically, N releases kept); the
mechanics live in ``tdauto.actions.releases``, this module holds what users call: the params
models, checked at ``create_task``, and the handlers.

Every path param is confined to ``TDAUTO_ALLOWED_PATHS``; a relative path is relative to the
data dir, so a template such as ``examples/deploy.yaml`` is valid as written. The usual task
is validate, deploy, verify, with ``on_failure: [rollback, verify]`` on verify: a release
that fails its health checks is switched back by itself.
"""

from __future__ import annotations

import re
import shutil
import socket
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from tdauto.actions.backup import sha256_file
from tdauto.actions.context import ActionContext, confine
from tdauto.actions.registry import action
from tdauto.actions.releases import (
    RELEASE_ID,
    App,
    artifact_format,
    build_release,
    check_archive,
    commit_release,
    default_release_id,
    key_suffix,
    locked,
    prune,
    read_record,
    set_aside,
    write_record,
)
from tdauto.errors import ActionError

_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_HOST_PORT = re.compile(r"^(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):(?P<port>\d{1,5})$")


def _under_data(value: str | Path, data_path: Path) -> Path:
    """A path param as an absolute path: relative ones are relative to the data dir."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else data_path / path


def _confined_param(value: str, info: ValidationInfo) -> str:
    """Field validator body: non-empty, and inside the allowed paths when settings are known."""
    if not value.strip():
        raise ValueError(f"{info.field_name} must be a path (relative ones are under the data dir)")
    settings = (info.context or {}).get("settings")
    if settings is not None:
        field = info.field_name or "path"
        confine(_under_data(value, settings.data_path), settings.confined_paths, field)
    return value


def _release_id(value: str | None) -> str | None:
    if value is not None and not RELEASE_ID.match(value):
        raise ValueError(
            f"release {value!r} is not a valid release id; use letters, digits, '_', '-', '.', "
            "'+' (it names a directory under releases/)"
        )
    return value


def _confined(ctx: ActionContext, value: str, field: str) -> Path:
    return ctx.confine(_under_data(value, ctx.data_dir), field)


def _argv(value: list[str] | None) -> list[str] | None:
    if value is not None and (not value or not all(arg for arg in value)):
        raise ValueError("a command is a non-empty argv list such as ['tar', '-tzf', '{artifact}']")
    return value


# --- validate -----------------------------------------------------------------------------


class ValidateParams(BaseModel):
    """Params of ``validate``.

    - ``artifact`` (required): the file or directory to deploy.
    - ``sha256``: the file's expected checksum (64 hex digits).
    - ``check``: a command (argv list) that must exit 0; ``{artifact}`` in an argument is
      replaced by the artifact's absolute path. It runs in the artifact's directory.
    - ``check_timeout_s``: seconds the check may take (default 300).
    """

    model_config = ConfigDict(extra="forbid")

    artifact: str = Field(description="file or directory to deploy")
    sha256: str | None = Field(default=None, description="expected sha256 of a file artifact")
    check: list[str] | None = Field(default=None, description="argv that must exit 0")
    check_timeout_s: float = Field(default=300.0, gt=0, description="seconds for check")

    _path = field_validator("artifact")(classmethod(lambda cls, v, info: _confined_param(v, info)))
    _cmd = field_validator("check")(classmethod(lambda cls, v: _argv(v)))

    @field_validator("sha256")
    @classmethod
    def _digest(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not _SHA256.match(value):
            raise ValueError(f"sha256 {value!r} must be 64 hex digits (as sha256sum prints)")
        return value.lower()


@action("validate", resource_class="storage", params=ValidateParams, process_type="deployment")
def validate(
    ctx: ActionContext,
    *,
    artifact: str,
    sha256: str | None = None,
    check: list[str] | None = None,
    check_timeout_s: float = 300.0,
) -> dict[str, Any]:
    """Check an artifact before it is deployed: it exists, its checksum, its own check.

    Output: ``artifact``, ``format`` (directory, tar, zip, file), ``bytes``, ``sha256`` (of
    a file), ``members`` (of an archive, each checked as deploy would unpack it) and
    ``check`` (``argv``, ``returncode``, ``duration_s``).
    """
    path = _confined(ctx, artifact, "artifact")
    if not path.exists():
        raise ActionError(f"artifact {path} does not exist", "not_found")
    fmt = artifact_format(path)
    output: dict[str, Any] = {"artifact": str(path), "format": fmt, "sha256": None}
    if fmt == "directory":
        if sha256 is not None:
            raise ActionError(
                f"sha256 checks a file, and {path} is a directory; archive it or drop sha256",
                "invalid",
            )
        output["bytes"] = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    else:
        output["bytes"] = path.stat().st_size
        output["sha256"] = digest = sha256_file(path)
        if sha256 is not None and digest != sha256:
            raise ActionError(
                f"artifact {path} has sha256 {digest}, expected {sha256}: it is corrupt, "
                "incomplete or not the build you meant",
                "integrity",
            )
    output["members"] = check_archive(path) if fmt in ("tar", "zip") else None
    output["check"] = None
    if check:
        argv = [arg.replace("{artifact}", str(path)) for arg in check]
        result = ctx.run(argv, cwd=path.parent, timeout_s=check_timeout_s, check=False)
        output["check"] = {
            "argv": argv,
            "returncode": result.returncode,
            "duration_s": round(result.duration_s, 3),
        }
        if result.returncode != 0:
            raise ActionError(
                f"check {argv[0]} exited with {result.returncode}: {result.output[-500:]}",
                "validate",
            )
    ctx.logger.info("artifact %s (%s, %d bytes) is valid", path, fmt, output["bytes"])
    return output


# --- deploy -------------------------------------------------------------------------------


class DeployParams(BaseModel):
    """Params of ``deploy``.

    - ``artifact`` (required): a ``.tar.gz``/``.tgz``/``.tar`` or ``.zip`` to unpack, a
      directory to copy, or any other file to copy into the release as it is.
    - ``app_dir`` (required): the application directory (``releases/``, ``current``).
    - ``release_id``: the release's directory name; default a UTC stamp and a hash of the
      action's idempotency key (``20240501T120000Z-1a2b3c4d``).
    - ``keep``: releases kept (default 5); the new and the previous one always stay.
    - ``strip_components``: use the archive's single top directory (N levels) as the release.
    """

    model_config = ConfigDict(extra="forbid")

    artifact: str = Field(description="archive, directory or file to deploy")
    app_dir: str = Field(description="application directory")
    release_id: str | None = Field(default=None, description="release directory name")
    keep: int = Field(default=5, ge=1, le=1000, description="releases kept")
    strip_components: int = Field(default=0, ge=0, le=10, description="top levels dropped")

    _paths = field_validator("artifact", "app_dir")(
        classmethod(lambda cls, v, info: _confined_param(v, info))
    )
    _id = field_validator("release_id")(classmethod(lambda cls, v: _release_id(v)))

    @model_validator(mode="after")
    def _not_nested(self, info: ValidationInfo) -> DeployParams:
        settings = (info.context or {}).get("settings")
        if settings is None and not (
            Path(self.artifact).is_absolute() and Path(self.app_dir).is_absolute()
        ):
            return self  # relative paths mean nothing until the data dir is known
        data = settings.data_path if settings is not None else Path("/")
        _refuse_nesting(
            _under_data(self.artifact, data).resolve(), _under_data(self.app_dir, data).resolve()
        )
        return self


def _refuse_nesting(artifact: Path, app_dir: Path) -> None:
    if artifact == app_dir or artifact in app_dir.parents:
        raise ValueError(
            f"app_dir {app_dir} lies inside the artifact {artifact}: a copy would contain "
            "itself; deploy from a directory outside the app"
        )


@action("deploy", resource_class="storage", params=DeployParams, process_type="deployment")
def deploy(
    ctx: ActionContext,
    *,
    artifact: str,
    app_dir: str,
    release_id: str | None = None,
    keep: int = 5,
    strip_components: int = 0,
) -> dict[str, Any]:
    """Unpack or copy the artifact into a new release, switch ``current`` to it, prune.

    Output: ``release``, ``path``, ``previous`` (the release ``current`` pointed to, or
    None), ``pruned`` (paths removed), ``prune_errors``, ``files`` and ``reused`` (an
    earlier attempt of this action built the release).
    """
    source = _confined(ctx, artifact, "artifact")
    app = App(_confined(ctx, app_dir, "app_dir"))
    if not source.exists():
        raise ActionError(f"artifact {source} does not exist", "not_found")
    try:
        _refuse_nesting(source, app.root)
    except ValueError as exc:
        raise ActionError(str(exc), "invalid") from None
    suffix = key_suffix(ctx.idempotency_key)
    app.releases_dir.mkdir(parents=True, exist_ok=True)
    with locked(app):
        current = app.current()
        record = read_record(app, "deploy", suffix)
        if record is None:
            release = release_id or default_release_id(ctx.idempotency_key)
            for taken in (app.release_path(release), app.rolled_back_dir / release):
                if taken.exists():
                    raise ActionError(
                        f"release {release!r} already exists ({taken}); give another release_id",
                        "exists",
                    )
            record = {"release": release, "previous": current, "artifact": str(source)}
            write_record(app, "deploy", suffix, record)
        release, previous = record["release"], record["previous"]
        path = app.release_path(release)
        reused = path.is_dir()
        if reused:
            ctx.logger.info("release %s was built by an earlier attempt", release)
            files = None
        else:
            files = _build(ctx, app, source, release, strip_components)
        if current != release:
            app.switch(release)
            ctx.logger.info("current -> releases/%s (was %s)", release, current)
        pruned, errors = prune(app, keep, {r for r in (release, previous) if r})
    for gone in pruned:
        ctx.logger.info("pruned %s", gone)
    for error in errors:
        ctx.logger.warning("could not prune %s", error)
    return {
        "release": release,
        "path": str(path),
        "previous": previous,
        "pruned": pruned,
        "prune_errors": errors,
        "files": files,
        "reused": reused,
    }


def _build(ctx: ActionContext, app: App, source: Path, release: str, strip_components: int) -> int:
    staging = app.releases_dir / f".staging-{release}"
    shutil.rmtree(staging, ignore_errors=True)  # what a crashed attempt left
    ctx.logger.info("building release %s from %s", release, source)
    try:
        root, files = build_release(source, staging, strip_components, ctx.cancel_event)
        commit_release(app, root, release)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
        raise ActionError(f"cannot unpack {source}: {exc}", "invalid") from exc
    except OSError as exc:
        raise ActionError(f"deploy of {source} failed: {exc}", "io") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    ctx.logger.info("release %s: %d entries", release, files)
    return files


# --- verify -------------------------------------------------------------------------------


class Check(BaseModel):
    """One health check: exactly one of ``path_exists`` (relative to the release),
    ``command`` (argv, run in the release, exit 0), ``http`` (URL answering ``status``) or
    ``tcp`` (``host:port`` accepting a connection); each within ``timeout_s``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path_exists: str | None = None
    command: list[str] | None = None
    http: str | None = None
    status: int = Field(default=200, ge=100, le=599)
    tcp: str | None = None
    timeout_s: float = Field(default=10.0, gt=0, le=600)

    _cmd = field_validator("command")(classmethod(lambda cls, v: _argv(v)))

    @field_validator("path_exists")
    @classmethod
    def _relative(cls, value: str | None) -> str | None:
        if value is not None and (
            not value or value.startswith("/") or ".." in PurePosixPath(value).parts
        ):
            raise ValueError(f"path_exists {value!r} must be relative to the release, without ..")
        return value

    @field_validator("http")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"http {value!r} must be an http:// or https:// URL with a host")
        return value

    @field_validator("tcp")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is not None:
            match = _HOST_PORT.match(value)
            if not match or not 0 < int(match["port"]) < 65536:
                raise ValueError(f"tcp {value!r} must be host:port, e.g. 127.0.0.1:8000")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> Check:
        kinds = [k for k in ("path_exists", "command", "http", "tcp") if getattr(self, k)]
        if len(kinds) != 1:
            raise ValueError(
                "each check is exactly one of path_exists, command, http, tcp; "
                f"got {kinds or 'none'}"
            )
        if "status" in self.model_fields_set and not self.http:
            raise ValueError("status applies to http checks only")
        return self

    @property
    def label(self) -> str:
        if self.command:
            return "command " + " ".join(self.command)
        kind = next(k for k in ("path_exists", "http", "tcp") if getattr(self, k))
        return f"{kind} {getattr(self, kind)}"


class VerifyParams(BaseModel):
    """Params of ``verify``.

    - ``checks`` (required): a list of checks (see ``Check``); all must pass.
    - ``app_dir``: the application directory; required by ``path_exists`` and ``command``
      checks, which run against the release ``current`` points to.
    """

    model_config = ConfigDict(extra="forbid")

    checks: list[Check] = Field(min_length=1, description="health checks, all must pass")
    app_dir: str | None = Field(default=None, description="application directory")

    @field_validator("app_dir")
    @classmethod
    def _app_dir(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else _confined_param(value, info)

    @model_validator(mode="after")
    def _needs_app_dir(self) -> VerifyParams:
        if self.app_dir is None and any(c.path_exists or c.command for c in self.checks):
            raise ValueError("path_exists and command checks need app_dir (the release's app)")
        return self


@action("verify", resource_class="cpu", params=VerifyParams, process_type="deployment")
def verify(
    ctx: ActionContext, *, checks: list[Check], app_dir: str | None = None
) -> dict[str, Any]:
    """Run health checks against the live release; fail (kind ``verify``) if any fails.

    Output: ``release``, ``path`` and ``checks`` (``check``, ``ok``, ``detail``,
    ``duration_s`` each). Every check runs, so the error names all that failed.
    """
    release, where = None, None
    if app_dir is not None:
        app = App(_confined(ctx, app_dir, "app_dir"))
        release = app.current()
        if release is None:
            raise ActionError(f"{app.current_link} does not exist: nothing deployed", "verify")
        where = ctx.confine(app.current_link, "app_dir")  # the release itself, links resolved
    results = []
    for check in checks:
        started = time.monotonic()
        ok, detail = _check(ctx, check, where)
        took = round(time.monotonic() - started, 3)
        results.append({"check": check.label, "ok": ok, "detail": detail, "duration_s": took})
        log = ctx.logger.info if ok else ctx.logger.error
        log("verify %s: %s (%s)", check.label, "ok" if ok else "FAILED", detail)
    failed = [f"{r['check']} ({r['detail']})" for r in results if not r["ok"]]
    if failed:
        raise ActionError(
            f"release {release or '?'} failed {len(failed)} of {len(results)} checks: "
            + "; ".join(failed),
            "verify",
        )
    return {"release": release, "path": str(where) if where else None, "checks": results}


def _check(ctx: ActionContext, check: Check, release: Path | None) -> tuple[bool, str]:
    if check.path_exists is not None:
        assert release is not None
        target = (release / check.path_exists).resolve()
        if target != release and release not in target.parents:
            return False, f"leads out of the release to {target}"
        return (True, "exists") if target.exists() else (False, "missing")
    if check.command is not None:
        try:
            result = ctx.run(check.command, cwd=release, timeout_s=check.timeout_s, check=False)
        except ActionError as exc:
            if exc.kind == "cancelled":
                raise
            return False, str(exc)
        except OSError as exc:
            return False, f"cannot run {check.command[0]}: {exc.strerror or exc}"
        tail = result.output.strip().splitlines()[-1:] if result.returncode else []
        return result.returncode == 0, f"exit {result.returncode}" + "".join(f": {t}" for t in tail)
    if check.http is not None:
        return _http(check.http, check.status, check.timeout_s)
    assert check.tcp is not None
    match = _HOST_PORT.match(check.tcp)
    assert match is not None
    try:
        with socket.create_connection(
            (match["host"].strip("[]"), int(match["port"])), timeout=check.timeout_s
        ):
            return True, "connected"
    except OSError as exc:
        return False, f"cannot connect: {exc.strerror or exc}"


def _http(url: str, expected: int, timeout_s: float) -> tuple[bool, str]:
    """GET ``url`` directly (no proxy: a health check asks the app itself)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, headers={"User-Agent": "tdauto-verify"})
    try:
        with opener.open(request, timeout=timeout_s) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
        exc.close()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, f"unreachable: {reason}"
    return status == expected, f"status {status}" + (
        "" if status == expected else f", expected {expected}"
    )


# --- rollback -----------------------------------------------------------------------------


class RollbackParams(BaseModel):
    """Params of ``rollback``.

    - ``app_dir`` (required): the application directory.
    - ``release``: the release to switch to; default the one before ``current``.
    - ``discard``: move the release switched away from to ``rolled_back/`` (default true), so
      a later rollback never lands on it again.
    """

    model_config = ConfigDict(extra="forbid")

    app_dir: str = Field(description="application directory")
    release: str | None = Field(default=None, description="release to switch to")
    discard: bool = Field(default=True, description="set the abandoned release aside")

    _path = field_validator("app_dir")(classmethod(lambda cls, v, info: _confined_param(v, info)))
    _id = field_validator("release")(classmethod(lambda cls, v: _release_id(v)))


@action("rollback", resource_class="storage", params=RollbackParams, process_type="deployment")
def rollback(
    ctx: ActionContext, *, app_dir: str, release: str | None = None, discard: bool = True
) -> dict[str, Any]:
    """Switch ``current`` back to the previous release, or to ``release``.

    Output: ``from``, ``to``, ``path`` (of ``to``), ``discarded`` (where the release left
    went, or None) and ``reused`` (an earlier attempt of this action decided the switch).
    """
    app = App(_confined(ctx, app_dir, "app_dir"))
    suffix = key_suffix(ctx.idempotency_key)
    if not app.root.is_dir():
        raise ActionError(f"{app.root} does not exist: nothing to roll back", "rollback")
    with locked(app):
        record = read_record(app, "rollback", suffix)
        reused = record is not None
        if record is None:
            record = _plan_rollback(app, release)
            write_record(app, "rollback", suffix, record)
        source, target = record["from"], record["to"]
        if not app.release_path(target).is_dir():
            raise ActionError(f"release {target!r} is gone from {app.releases_dir}", "rollback")
        if app.current() != target:
            app.switch(target)
            ctx.logger.info("current -> releases/%s (rolled back from %s)", target, source)
        aside = set_aside(app, source) if discard else None
        if discard and aside is None and (app.rolled_back_dir / source).is_dir():
            aside = app.rolled_back_dir / source  # set aside by an earlier attempt
    if aside is not None:
        ctx.logger.info("release %s set aside in %s", source, aside)
    return {
        "from": source,
        "to": target,
        "path": str(app.release_path(target)),
        "discarded": str(aside) if aside else None,
        "reused": reused,
    }


def _plan_rollback(app: App, release: str | None) -> dict[str, str]:
    current = app.current()
    if current is None:
        raise ActionError(f"{app.current_link} does not exist: nothing to roll back", "rollback")
    if release is None:
        target = app.previous_of(current)
        if target is None:
            raise ActionError(
                f"no release before {current!r} in {app.releases_dir}: nothing to roll back "
                "to (deploy a known-good artifact instead)",
                "rollback",
            )
        return {"from": current, "to": target}
    if release == current:
        raise ActionError(f"release {release!r} is already current", "rollback")
    if release not in app.releases():
        where = (
            " (it was rolled back: move it back into releases/ to use it)"
            if (app.rolled_back_dir / release).exists()
            else ""
        )
        known = ", ".join(app.releases()) or "none"
        raise ActionError(
            f"no release {release!r} in {app.releases_dir}{where}; releases: {known}", "rollback"
        )
    return {"from": current, "to": release}


__all__ = [
    "Check",
    "DeployParams",
    "RollbackParams",
    "ValidateParams",
    "VerifyParams",
    "deploy",
    "rollback",
    "validate",
    "verify",
]
