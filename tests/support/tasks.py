"""A good task definition to vary, the CLI run on a file, and a fingerprint of what a store
holds (to show a refusal left it as it was)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result


def good_task(**changes: Any) -> dict[str, Any]:
    """A daily cleanup every test can create; ``changes`` replace top-level fields."""
    task: dict[str, Any] = {
        "name": "nightly-cleanup",
        "type": "maintenance",
        "schedule": "daily",
        "schedule_config": {"hour": 2, "minute": 0},
        "actions": [{"type": "cleanup", "params": {"older_than": "30days"}}],
    }
    task.update(changes)
    return task


def store_fingerprint(data_dir: Path) -> dict[str, str]:
    """Each file of the file store's tasks and state (locks aside) -> its SHA-256."""
    found: dict[str, str] = {}
    for folder in ("tasks", "state"):
        for path in sorted((data_dir / folder).rglob("*")):
            if path.is_file() and not path.name.endswith(".lock"):
                found[str(path.relative_to(data_dir))] = hashlib.sha256(
                    path.read_bytes()
                ).hexdigest()
    return found


def run_cli(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    """``tdauto ARGS`` against ``data_dir`` (and ``env``), stderr kept apart from stdout."""
    from tdauto.cli import main

    variables = {"TDAUTO_DATA_DIR": str(data_dir), **(env or {})}
    return CliRunner().invoke(main, list(args), env=variables)
