"""Deployment actions: ``validate``, ``deploy``, ``verify`` and ``rollback``.

Importing this module registers them. They work on release directories as Capistrano lays
them out (``releases/<id>``, a ``current`` symlink switched atomically, N releases kept); the
mechanics live in ``tdauto.actions.releases``. This module holds the handlers of
``validate``, ``deploy`` and ``rollback``; their params models, checked at ``create_task``,
are in ``tdauto.actions.deploy_params``, and ``verify`` with its checks is in
``tdauto.actions.verify``, imported here so that the four register together.

Every path param is confined to ``TDAUTO_ALLOWED_PATHS``; a relative path is relative to the
data dir, so a template such as ``examples/deploy.yaml`` is valid as written. The usual task
is validate, deploy, verify, with ``on_failure: [rollback, verify]`` on verify: a release
that fails its health checks is switched back by itself.
"""

from __future__ import annotations

import contextlib
import tarfile
import zipfile
from pathlib import Path
from typing import Any

from tdauto.actions.backup import sha256_file
from tdauto.actions.context import ActionContext
from tdauto.actions.deploy_params import (
    DeployParams,
    RollbackParams,
    ValidateParams,
    check_command,
    confined_path,
    refuse_nesting,
)
from tdauto.actions.paths import confined_cwd
from tdauto.actions.programs import CHECKS
from tdauto.actions.registry import action
from tdauto.actions.release_build import artifact_format, build_release, check_archive
from tdauto.actions.releases import (
    Site,
    commit_release,
    default_release_id,
    key_suffix,
    locked,
    opened,
    prune,
    read_record,
    set_aside,
    write_record,
)
from tdauto.actions.verify import Check, VerifyParams, verify
from tdauto.errors import ActionError

# --- validate -----------------------------------------------------------------------------


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
    path = confined_path(ctx, artifact, "artifact")
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
        argv = check_command(check, path)
        with confined_cwd(ctx, _check_dir(ctx, path), "artifact") as cwd:
            result = ctx.run(
                argv,
                programs=CHECKS,
                param="check",
                cwd=cwd,
                timeout_s=check_timeout_s,
                check=False,
            )
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


def _check_dir(ctx: ActionContext, artifact: Path) -> Path:
    """Where a check runs: the artifact's folder, or the artifact itself when that folder
    lies outside the allowed paths (a directory artifact that is an allowed path)."""
    inside = any(artifact.parent.is_relative_to(root) for root in ctx.settings.confined_paths)
    return artifact.parent if inside else artifact


# --- deploy -------------------------------------------------------------------------------


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
    source = confined_path(ctx, artifact, "artifact")
    root = confined_path(ctx, app_dir, "app_dir")
    if not source.exists():
        raise ActionError(f"artifact {source} does not exist", "not_found")
    try:
        refuse_nesting(source, root)
    except ValueError as exc:
        raise ActionError(str(exc), "invalid") from None
    suffix = key_suffix(ctx.idempotency_key)
    with opened(root, ctx.settings.confined_paths, create=True) as site, locked(site):
        app = site.app
        current = site.current()
        record = read_record(site, "deploy", suffix)
        if record is None:
            release = release_id or default_release_id(ctx.idempotency_key)
            if site.releases.lstat(release) is not None or site.set_aside_exists(release):
                raise ActionError(
                    f"release {release!r} already exists (in {app.releases_dir} or "
                    f"{app.rolled_back_dir}); give another release_id",
                    "exists",
                )
            record = {"release": release, "previous": current, "artifact": str(source)}
            write_record(site, "deploy", suffix, record)
        release, previous = record["release"], record["previous"]
        path = app.release_path(release)
        reused = site.has_release(release)
        if reused:
            ctx.logger.info("release %s was built by an earlier attempt", release)
            files = None
        else:
            files = _build(ctx, site, source, release, strip_components)
        if current != release:
            site.switch(release)
            ctx.logger.info("current -> releases/%s (was %s)", release, current)
        pruned, errors = prune(site, keep, {r for r in (release, previous) if r})
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


def _build(
    ctx: ActionContext, site: Site, source: Path, release: str, strip_components: int
) -> int:
    staging = f".staging-{release}"
    _discard(site, staging)  # what a crashed attempt left
    ctx.logger.info("building release %s from %s", release, source)
    try:
        with contextlib.ExitStack() as stack:
            folder = stack.enter_context(site.releases.sub(staging, create=True))
            built, files = build_release(source, folder.pinned, strip_components, ctx.cancel_event)
            # the built tree, ``strip_components`` levels down: renamed from its own folder
            parent, name = site.releases, staging
            for part in built.relative_to(folder.pinned).parts:
                parent = stack.enter_context(parent.sub(name))
                name = part
            commit_release(site, parent, name, release)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
        raise ActionError(f"cannot unpack {source}: {exc}", "invalid") from exc
    except OSError as exc:
        raise ActionError(f"deploy of {source} failed: {exc}", "io") from exc
    finally:
        _discard(site, staging)
    ctx.logger.info("release %s: %d entries", release, files)
    return files


def _discard(site: Site, staging: str) -> None:
    with contextlib.suppress(OSError):
        site.releases.remove_tree(staging)


# --- rollback -----------------------------------------------------------------------------


@action("rollback", resource_class="storage", params=RollbackParams, process_type="deployment")
def rollback(
    ctx: ActionContext, *, app_dir: str, release: str | None = None, discard: bool = True
) -> dict[str, Any]:
    """Switch ``current`` back to the previous release, or to ``release``.

    Output: ``from``, ``to``, ``path`` (of ``to``), ``discarded`` (where the release left
    went, or None) and ``reused`` (an earlier attempt of this action decided the switch).
    """
    root = confined_path(ctx, app_dir, "app_dir")
    suffix = key_suffix(ctx.idempotency_key)
    with contextlib.ExitStack() as stack:
        try:
            site = stack.enter_context(opened(root, ctx.settings.confined_paths, create=False))
        except FileNotFoundError:
            raise ActionError(f"{root} does not exist: nothing to roll back", "rollback") from None
        app = site.app
        stack.enter_context(locked(site))
        record = read_record(site, "rollback", suffix)
        reused = record is not None
        if record is None:
            record = _plan_rollback(site, release)
            write_record(site, "rollback", suffix, record)
        source, target = record["from"], record["to"]
        if not site.has_release(target):
            raise ActionError(f"release {target!r} is gone from {app.releases_dir}", "rollback")
        if site.current() != target:
            site.switch(target)
            ctx.logger.info("current -> releases/%s (rolled back from %s)", target, source)
        aside = set_aside(site, source) if discard else None
        if discard and aside is None and site.rolled_back and site.rolled_back.is_dir(source):
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


def _plan_rollback(site: Site, release: str | None) -> dict[str, str]:
    app = site.app
    current = site.current()
    if current is None:
        raise ActionError(f"{app.current_link} does not exist: nothing to roll back", "rollback")
    if release is None:
        target = site.previous_of(current)
        if target is None:
            raise ActionError(
                f"no release before {current!r} in {app.releases_dir}: nothing to roll back "
                "to (deploy a known-good artifact instead)",
                "rollback",
            )
        return {"from": current, "to": target}
    if release == current:
        raise ActionError(f"release {release!r} is already current", "rollback")
    if release not in site.release_ids():
        where = (
            " (it was rolled back: move it back into releases/ to use it)"
            if site.set_aside_exists(release)
            else ""
        )
        known = ", ".join(site.release_ids()) or "none"
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
