"""``tdauto backup``: restoring backups. Only the questions live here; every step is in
``tdauto.actions.maintenance`` and ``tdauto.actions.store_restore`` (docs/architecture.md:
the CLI calls the same functions as Python callers), and errors become one line through
``tdauto.cli.base``'s group."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console

from tdauto.cli.output import Output, output_options
from tdauto.cli_print import safe
from tdauto.errors import TdautoError
from tdauto.printable import printable

console = Console(emoji=False)
err_console = Console(stderr=True, emoji=False)


@click.group()
def backup() -> None:
    """Restore backups made by the backup action."""


def stdin_is_interactive() -> bool:
    """Whether restore can ask (a test answers through CliRunner by patching this)."""
    return sys.stdin.isatty()


@backup.command("restore")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--dest",
    type=click.Path(path_type=Path),
    default=None,
    help="Where it goes: a SQLite file, a directory, or the data dir a store backup restores "
    "into (default for a store backup: the configured store).",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing file or non-empty directory.")
@click.option("--yes", is_flag=True, help="Do not ask before replacing a store.")
@click.option("--force", is_flag=True, help="Restore a store even while tdauto is using it.")
@output_options
def backup_restore(
    path: Path, dest: Path | None, overwrite: bool, yes: bool, force: bool, out: Output
) -> None:
    """Check a backup's sha256, then restore it (a store, a SQLite file or a directory).

    A store backup is refused while tdauto up or workers use the store (unless --force) and
    asks first (unless --yes); its runs that were in flight come back FAILED."""
    from tdauto.actions import store_restore
    from tdauto.actions.maintenance import archive_kind, restore_backup
    from tdauto.settings import Settings

    if archive_kind(path) != "store":
        result = restore_backup(path, dest=dest, overwrite=overwrite)
    else:
        settings = Settings()
        plan = store_restore.plan_store_restore(path, settings, dest=dest, overwrite=overwrite)
        if not force:
            store_restore.check_not_in_use(plan, settings)
        if not yes:
            if not stdin_is_interactive():
                raise TdautoError(
                    f"stdin is not a terminal, so restore cannot ask: {plan.summary()}? "
                    "Pass --yes to restore without asking"
                )
            if not click.confirm(f"{printable(plan.summary())}?", err=True):
                err_console.print("nothing restored")
                sys.exit(1)
        result = store_restore.apply_store_restore(plan, settings, force=force)
    if out.data:
        out.emit(result)
    else:
        console.print(
            f"restored {safe(result['kind'])} backup {safe(path)} (sha256 {safe(result['sha256'])})"
        )
