"""Generic actions: ``shell`` (run an allow-listed program) and ``http`` (one HTTP request,
in ``tdauto.actions.http_request``, imported here so that both register together).

``shell`` is off unless ``TDAUTO_SHELL_ALLOW`` lists the program (the ``SHELL`` list of
``tdauto.actions.programs``, the gate every program goes through). It takes an argv list and
never a shell string: no shell is started, so ``;``, ``|``, ``$(...)`` and globs reach the
program as literal arguments. The program is resolved to an absolute path on the worker's
own ``PATH`` before it runs (an ``env`` addition cannot swap it), and it runs through
``ctx.run``: its own process group, stopped on cancel, timeout or the run's deadline. A
``cwd`` is held open while it runs (``tdauto.actions.paths.confined_cwd``).
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from tdauto.actions.context import ActionContext, confine
from tdauto.actions.paths import confined_cwd
from tdauto.actions.programs import SHELL, check_env, program_path
from tdauto.actions.registry import action
from tdauto.errors import ActionError
from tdauto.redact import redact, redact_text
from tdauto.settings import Settings
from tdauto.units import parse_duration_s

OUTPUT_CAP = 256_000  # the most a shell result keeps of a command's output, bytes
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# --- shell ------------------------------------------------------------------------------------


class ShellParams(BaseModel):
    """Params of ``shell``.

    - ``argv``: the program and its arguments, as a list (``["rsync", "-a", "src/", "dst/"]``).
      A string is refused: no shell is used, so there is nothing to split it.
    - ``cwd``: working directory, inside ``TDAUTO_ALLOWED_PATHS`` (default: the data dir; a
      relative path is relative to the data dir).
    - ``env``: variables added to the worker's environment (loader ones, ``LD_*``,
      ``DYLD_*``, ``GCONV_PATH``, refused).
    - ``inherit_env``: start from the worker's environment (default; without tdauto's secret
      settings) or from PATH and LANG only.
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
            program_path(value[0], SHELL, settings, param="argv", resolve=False)
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
            check_env({name: text}, inherited={})
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
    program = program_path(argv[0], SHELL, ctx.settings, param="argv")
    workdir = ctx.confine(ctx.data_dir / cwd, "cwd") if cwd else ctx.data_dir
    shown = redact([program, *argv[1:]])
    held = confined_cwd(ctx, workdir, "cwd") if cwd else contextlib.nullcontext(workdir)
    with held as pinned:  # the data dir itself is the operator's, not a param
        ctx.logger.info("running %s in %s", shlex.join(shown), workdir)
        result = ctx.run(
            [program, *argv[1:]],
            programs=SHELL,
            timeout_s=timeout,
            cwd=pinned,
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


from tdauto.actions.http_request import (  # noqa: E402 - registers http beside shell
    HttpParams,
    http,
    redact_headers,
    redact_url,
)

__all__ = [
    "HttpParams",
    "ShellParams",
    "http",
    "redact_headers",
    "redact_url",
    "shell",
]
