"""An example tdauto plugin: a ``checksums`` action that writes a SHA-256 manifest.

Use it by naming the module in ``TDAUTO_PLUGINS`` (every tdauto process then imports it, so
the facade, the beat and every worker know the action)::

    TDAUTO_PLUGINS=examples.plugin_example tdauto up

or, in a package of your own, in the ``tdauto.actions`` entry-point group::

    [project.entry-points."tdauto.actions"]
    checksums = "mypackage.checksums"

Then a task can use it like any built-in action::

    actions:
      - type: checksums
        params: {directory: site, pattern: "*.html"}

Every line below says why it is there; the whole recipe is in ``docs/custom-actions.md``.
"""

# Postponed annotations, as in tdauto itself (pydantic still sees the real types).
from __future__ import annotations

# Standard library only: what the action does needs nothing more.
import fnmatch
import hashlib
import os
from pathlib import Path
from typing import Any

# pydantic describes the params; tdauto validates them when a task is created, not at 2 a.m.
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

# The three things a plugin needs from tdauto: the decorator, the context type and the error.
from tdauto import action
from tdauto.actions.context import ActionContext, confine
from tdauto.errors import ActionError

# Files read per run at most, so a typo such as "/" cannot make a run read a whole disk.
MAX_FILES = 10_000


class ChecksumsParams(BaseModel):
    """Params of ``checksums`` (shown by ``tdauto actions``)."""

    # extra="forbid": a misspelt key ("patern") is an error at create_task, not ignored.
    model_config = ConfigDict(extra="forbid")

    # Required: the directory to describe; relative paths are relative to the data dir.
    directory: str = Field(min_length=1, description="directory to checksum")
    # Optional with a default: a glob on file names.
    pattern: str = Field(default="*", description="glob on file names, e.g. *.tar.gz")
    # Optional: where to write the manifest; default <directory>/SHA256SUMS.
    manifest: str | None = Field(default=None, description="manifest file to write")
    # A bounded number: pydantic refuses 0 and anything above MAX_FILES with a clear message.
    max_files: int = Field(default=1000, ge=1, le=MAX_FILES)

    # Paths are checked against TDAUTO_ALLOWED_PATHS at validation when settings are in the
    # validation context (they are in create_task and when a worker runs the action).
    @field_validator("directory", "manifest")
    @classmethod
    def _confined(cls, value: str | None, info: ValidationInfo) -> str | None:
        settings = (info.context or {}).get("settings")
        if value is not None and settings is not None:
            confine(
                _absolute(value, settings.data_path), settings.confined_paths, str(info.field_name)
            )
        return value


def _absolute(path: str, data_dir: Path) -> Path:
    """A relative path is relative to the data dir, as with tdauto's own actions."""
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else data_dir / candidate


def _sha256(path: Path) -> str:
    """Stream the file in 1 MiB blocks so a large file does not fill memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# The decorator registers the action when this module is imported:
# - "checksums" is the name tasks use in "type" (lower case, digits and _);
# - resource_class picks the pool it runs on ("storage": it mostly reads files);
# - params is the model above; process_type groups it in `tdauto actions`.
@action("checksums", resource_class="storage", params=ChecksumsParams, process_type="maintenance")
def checksums(
    ctx: ActionContext,
    *,
    directory: str,
    pattern: str,
    manifest: str | None,
    max_files: int,
) -> dict[str, Any]:
    """Write a SHA-256 manifest of the files in a directory (an example plugin action)."""
    # The first docstring line above is the description `tdauto actions` shows.
    # The handler gets the validated params as keyword arguments, one per model field.
    # Confine again at run time: the worker's TDAUTO_ALLOWED_PATHS is the one that counts.
    root = ctx.confine(_absolute(directory, ctx.data_dir), "directory")
    if not root.is_dir():
        # ActionError's kind ("not_found") is what a task's retry.retry_on can match.
        raise ActionError(f"directory {root} does not exist", "not_found")
    target = ctx.confine(
        _absolute(manifest, ctx.data_dir) if manifest else root / "SHA256SUMS", "manifest"
    )
    # ctx.logger writes to this execution's log (`tdauto exec logs ID`), secrets redacted.
    ctx.logger.info("checksumming %s in %s", pattern, root)
    entries: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()  # a stable order makes the manifest diffable
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path == target or not fnmatch.fnmatch(name, pattern) or path.is_symlink():
                continue
            # A long action checks ctx.cancelled so cancel and timeouts stop it promptly.
            if ctx.cancelled:
                raise ActionError("cancelled while checksumming", "cancelled")
            if len(entries) >= max_files:
                raise ActionError(f"more than {max_files} files match; raise max_files", "limit")
            entries[path.relative_to(root).as_posix()] = _sha256(path)
    # Write to a temporary file named after ctx.idempotency_key, then rename: a retried or
    # redelivered attempt rewrites the same manifest instead of leaving half a file behind.
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{ctx.idempotency_key.replace(':', '-')}.tmp")
    tmp.write_text("".join(f"{digest}  {name}\n" for name, digest in entries.items()))
    os.replace(tmp, target)
    ctx.logger.info("wrote %d checksums to %s", len(entries), target)
    # The result is a JSON-ready dict: it is stored as the action's output in the execution.
    return {"directory": str(root), "manifest": str(target), "files": len(entries)}
