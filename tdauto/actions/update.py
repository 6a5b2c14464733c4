"""The ``update`` action: run allow-listed maintenance commands and record what they did.

Off unless ``TDAUTO_UPDATE_ALLOW`` lists programs: bare names (looked up on the worker's
``PATH``) or absolute paths; ``argv[0]`` must be one of them (or the same file under the same
name), and a relative path (``./x``, ``bin/x``) or one with ``..`` is never allowed: the
``UPDATE`` list of ``tdauto.actions.programs``, the gate every program goes through.
Commands are argv lists, never shell strings, so nothing in an argument is interpreted by a
shell; listing a shell or an interpreter in the allow-list would give that back, so don't.

Commands run one after another in their own process group (``ctx.run``: stopped on cancel,
timeout or the run's deadline). Each one's exit code, duration and output (its last
``max_output_bytes``, secrets redacted) go in the action's output; the full output is in the
execution's log. The action fails on the first non-zero exit, unless ``continue_on_error``,
in which case every command runs and the output counts the failures.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from tdauto.actions.context import ActionContext, confine
from tdauto.actions.paths import confined_cwd
from tdauto.actions.programs import UPDATE, program_path
from tdauto.actions.registry import action
from tdauto.errors import ActionError
from tdauto.redact import redact, redact_text
from tdauto.units import parse_duration_s


class UpdateParams(BaseModel):
    """Params of ``update``.

    - ``commands``: argv lists, e.g. ``[["apt-get", "update"], ["apt-get", "-y", "upgrade"]]``.
    - ``continue_on_error``: run every command even after one fails (default false).
    - ``timeout_s``: limit of each command ("10m", or seconds).
    - ``cwd``: working directory, inside ``TDAUTO_ALLOWED_PATHS``.
    - ``max_output_bytes``: of each command's output kept in the action's output.
    """

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    commands: list[list[str]] = Field(min_length=1)
    continue_on_error: bool = False
    timeout_s: float | None = None
    cwd: str | None = None
    max_output_bytes: int = Field(default=16_000, ge=0, le=1_000_000)

    @field_validator("commands", mode="before")
    @classmethod
    def _argv_lists(cls, value: object) -> object:
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, str):
                raise ValueError(
                    f"command {redact_text(item)!r} is a string; give each command as an argv "
                    'list such as ["apt-get", "update"] (never a shell string)'
                )
        return value

    @field_validator("commands")
    @classmethod
    def _allowed(cls, value: list[list[str]], info: ValidationInfo) -> list[list[str]]:
        settings = (info.context or {}).get("settings")
        for argv in value:
            if not argv or not argv[0]:
                raise ValueError("a command is a non-empty argv list; its first item the program")
            if any("\0" in arg for arg in argv):
                raise ValueError("arguments cannot contain NUL bytes")
            if settings is not None:
                program_path(argv[0], UPDATE, settings, param="commands", resolve=False)
        return value

    @field_validator("timeout_s", mode="before")
    @classmethod
    def _timeout(cls, value: object) -> object:
        return None if value is None else parse_duration_s(value)

    @field_validator("cwd")
    @classmethod
    def _cwd(cls, value: str | None, info: ValidationInfo) -> str | None:
        settings = (info.context or {}).get("settings")
        if value is not None and settings is not None:
            confine(value, settings.confined_paths, "cwd")
        return value


@action("update", resource_class="cpu", params=UpdateParams, process_type="maintenance")
def update(
    ctx: ActionContext,
    *,
    commands: list[list[str]],
    continue_on_error: bool = False,
    timeout_s: float | None = None,
    cwd: str | None = None,
    max_output_bytes: int = 16_000,
) -> dict[str, Any]:
    """Run each allow-listed command; fail on the first non-zero exit unless told not to.

    Output: ``commands`` (each ``argv``, ``exit_code`` (None if it timed out), ``duration_s``,
    ``output``, ``output_truncated``), ``failed`` (how many did not exit 0) and ``ok``.
    """
    workdir = ctx.confine(cwd, "cwd") if cwd is not None else None
    # the allow-list may have changed since the task was created: check all before any runs
    programs = [program_path(argv[0], UPDATE, ctx.settings, param="commands") for argv in commands]
    resolved = [[program, *argv[1:]] for program, argv in zip(programs, commands, strict=True)]
    with contextlib.ExitStack() as stack:
        pinned = stack.enter_context(confined_cwd(ctx, workdir)) if workdir else None
        results = _run_all(
            ctx, resolved, commands, continue_on_error, timeout_s, pinned, max_output_bytes
        )
    failed = sum(1 for r in results if r["exit_code"] != 0)
    return {"ok": failed == 0, "failed": failed, "commands": results}


def _run_all(
    ctx: ActionContext,
    resolved: list[list[str]],
    commands: list[list[str]],
    continue_on_error: bool,
    timeout_s: float | None,
    cwd: Path | None,
    cap: int,
) -> list[dict[str, Any]]:
    """Run the commands in order, in ``cwd`` (a folder held open); stop at the first failure
    unless ``continue_on_error``."""
    results: list[dict[str, Any]] = []
    for number, (program_argv, argv) in enumerate(zip(resolved, commands, strict=True), 1):
        record = _run(ctx, program_argv, argv, timeout_s, cwd, cap)
        results.append(record)
        if record["exit_code"] != 0 and not continue_on_error:
            raise ActionError(
                f"update: command {number} of {len(commands)} ({' '.join(record['argv'])}) "
                f"{_ended(record)}; the commands after it did not run. Output ends: "
                f"{record['output'][-500:]}",
                "timeout" if record["exit_code"] is None else "exit",
            )
    return results


def _run(
    ctx: ActionContext,
    resolved: list[str],
    argv: list[str],
    timeout_s: float | None,
    cwd: Path | None,
    cap: int,
) -> dict[str, Any]:
    shown = redact(list(argv))
    ctx.logger.info("update: running %s", " ".join(shown))
    try:
        result = ctx.run(
            resolved,
            programs=UPDATE,
            param="commands",
            timeout_s=timeout_s,
            cwd=cwd,
            check=False,
        )
    except ActionError as exc:
        if exc.kind != "timeout":
            raise  # cancelled: stop here, whatever continue_on_error says
        return {
            "argv": shown,
            "exit_code": None,
            "duration_s": timeout_s,
            "output": str(exc),
            "output_truncated": False,
        }
    kept, truncated = _tail(result.output, cap)
    return {
        "argv": shown,
        "exit_code": result.returncode,
        "duration_s": round(result.duration_s, 3),
        "output": redact_text(kept),
        "output_truncated": truncated or result.dropped > 0,
    }


def _tail(output: str, cap: int) -> tuple[str, bool]:
    """The last ``cap`` bytes of ``output`` from a line start (a cut line could hide a secret
    from redaction), and whether anything was cut. Cut before redacting: it is cheaper."""
    data = output.encode("utf-8")
    if len(data) <= cap:
        return output, False
    kept = data[-cap:].decode("utf-8", "ignore") if cap else ""
    newline = kept.find("\n")
    return (kept[newline + 1 :] if newline >= 0 else ""), True


def _ended(record: dict[str, Any]) -> str:
    if record["exit_code"] is None:
        return f"timed out after {record['duration_s']}s"
    return f"exited with {record['exit_code']}"
