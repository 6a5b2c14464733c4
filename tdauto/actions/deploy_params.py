"""The params of the deployment actions ``validate``, ``deploy`` and ``rollback``, checked at
``create_task``, and the validators every deployment action shares (``verify``'s params,
which are its health checks, live with it in ``tdauto.actions.verify``).

Every path param is confined to ``TDAUTO_ALLOWED_PATHS``; a relative path is relative to the
data dir, so a template such as ``examples/deploy.yaml`` is valid as written.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from tdauto.actions.context import ActionContext, confine
from tdauto.actions.programs import CHECKS, checked_argv
from tdauto.actions.releases import RELEASE_ID

_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


def under_data(value: str | Path, data_path: Path) -> Path:
    """A path param as an absolute path: relative ones are relative to the data dir."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else data_path / path


def confined_param(value: str, info: ValidationInfo) -> str:
    """Field validator body: non-empty, and inside the allowed paths when settings are known."""
    if not value.strip():
        raise ValueError(f"{info.field_name} must be a path (relative ones are under the data dir)")
    settings = (info.context or {}).get("settings")
    if settings is not None:
        field = info.field_name or "path"
        confine(under_data(value, settings.data_path), settings.confined_paths, field)
    return value


def check_release_id(value: str | None) -> str | None:
    """Field validator body: a release id names a directory under ``releases/``."""
    if value is not None and not RELEASE_ID.match(value):
        raise ValueError(
            f"release {value!r} is not a valid release id; use letters, digits, '_', '-', '.', "
            "'+' (it names a directory under releases/)"
        )
    return value


def confined_path(ctx: ActionContext, value: str, field: str) -> Path:
    """A path param checked again in the handler, as it resolves there (links followed)."""
    return ctx.confine(under_data(value, ctx.data_dir), field)


def check_argv(value: list[str] | None, info: ValidationInfo) -> list[str] | None:
    """Field validator body: a command is an argv list of non-empty strings, never a shell
    line, whose program ``TDAUTO_CHECK_ALLOW`` admits (when settings are known)."""
    if value is None:
        return None
    if not value or not all(arg for arg in value):
        raise ValueError("a command is a non-empty argv list such as ['tar', '-tzf', '{artifact}']")
    settings = (info.context or {}).get("settings")
    if settings is not None and "{artifact}" not in value[0]:
        checked_argv(value, CHECKS, settings, param=info.field_name or "command", resolve=False)
    return value


def check_command(argv: list[str], artifact: Path) -> list[str]:
    """A check's argv with ``{artifact}`` replaced by the artifact's absolute path."""
    return [arg.replace("{artifact}", str(artifact)) for arg in argv]


# --- validate -----------------------------------------------------------------------------


class ValidateParams(BaseModel):
    """Params of ``validate``.

    - ``artifact`` (required): the file or directory to deploy.
    - ``sha256``: the file's expected checksum (64 hex digits).
    - ``check``: a command (argv list) that must exit 0, its program listed in
      ``TDAUTO_CHECK_ALLOW``; ``{artifact}`` in an argument is replaced by the artifact's
      absolute path. It runs in the artifact's directory.
    - ``check_timeout_s``: seconds the check may take (default 300).
    """

    model_config = ConfigDict(extra="forbid")

    artifact: str = Field(description="file or directory to deploy")
    sha256: str | None = Field(default=None, description="expected sha256 of a file artifact")
    check: list[str] | None = Field(default=None, description="argv that must exit 0")
    check_timeout_s: float = Field(default=300.0, gt=0, description="seconds for check")

    _path = field_validator("artifact")(classmethod(lambda cls, v, info: confined_param(v, info)))
    _cmd = field_validator("check")(classmethod(lambda cls, v, info: check_argv(v, info)))

    @field_validator("sha256")
    @classmethod
    def _digest(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not _SHA256.match(value):
            raise ValueError(f"sha256 {value!r} must be 64 hex digits (as sha256sum prints)")
        return value.lower()

    @model_validator(mode="after")
    def _check_program(self, info: ValidationInfo) -> ValidateParams:
        """A check whose program is ``{artifact}`` itself is checked once that is known."""
        settings = (info.context or {}).get("settings")
        if self.check and settings is not None and "{artifact}" in self.check[0]:
            path = under_data(self.artifact, settings.data_path).resolve()
            argv = check_command(self.check, path)
            checked_argv(argv, CHECKS, settings, param="check", resolve=False)
        return self


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
        classmethod(lambda cls, v, info: confined_param(v, info))
    )
    _id = field_validator("release_id")(classmethod(lambda cls, v: check_release_id(v)))

    @model_validator(mode="after")
    def _not_nested(self, info: ValidationInfo) -> DeployParams:
        settings = (info.context or {}).get("settings")
        if settings is None and not (
            Path(self.artifact).is_absolute() and Path(self.app_dir).is_absolute()
        ):
            return self  # relative paths mean nothing until the data dir is known
        data = settings.data_path if settings is not None else Path("/")
        refuse_nesting(
            under_data(self.artifact, data).resolve(), under_data(self.app_dir, data).resolve()
        )
        return self


def refuse_nesting(artifact: Path, app_dir: Path) -> None:
    """Raise ValueError if ``app_dir`` is ``artifact`` or inside it (resolved paths)."""
    if artifact == app_dir or artifact in app_dir.parents:
        raise ValueError(
            f"app_dir {app_dir} lies inside the artifact {artifact}: a copy would contain "
            "itself; deploy from a directory outside the app"
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

    _path = field_validator("app_dir")(classmethod(lambda cls, v, info: confined_param(v, info)))
    _id = field_validator("release")(classmethod(lambda cls, v: check_release_id(v)))


__all__ = [
    "DeployParams",
    "RollbackParams",
    "ValidateParams",
    "check_argv",
    "check_command",
    "check_release_id",
    "confined_param",
    "confined_path",
    "refuse_nesting",
    "under_data",
]
