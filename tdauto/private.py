"""Files that hold records or output are their owner's only: 0600 files, 0700 folders.

Task definitions, execution records, logs, store backups and worker logs carry commands,
hosts and the output of every action; another user of the host must not read them. So they
are *created* private (a mode given to ``os.open``, ``mkdir``), never made private after
their content is written, and ``tighten`` fixes the ones an earlier tdauto left readable when
``tdauto up`` or ``AutomationSystems.start()`` begins. The umask can only narrow these modes.
The data dir itself is left as it is (it may be a folder the user shares with other things);
the folders tdauto keeps in it are not.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700
# the data dir's folders and files that hold records or output (docs/architecture.md, Storage)
PRIVATE_DIRS = ("tasks", "executions", "logs", "state", "backups", "metrics", "reports", "broker")
PRIVATE_FILES = ("flower.db*",)

log = logging.getLogger(__name__)


def private_dir(path: Path) -> Path:
    """``mkdir -p`` with every folder it creates 0700; returns ``path``."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # made meanwhile by another process
            folder.mkdir(mode=DIR_MODE)
    return path


def opener(path: str, flags: int) -> int:
    """``open(..., opener=opener)``: a file it creates is 0600."""
    return os.open(path, flags | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)


def create(path: Path) -> Path:
    """Create ``path`` empty and 0600 (fails if it exists), for a writer that opens it by name
    (gzip, tarfile, a subprocess) and so keeps that mode."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE))
    return path


def write_text(path: Path, text: str) -> None:
    """``path.write_text(text)``, the file created 0600."""
    with open(path, "w", encoding="utf-8", opener=opener) as handle:
        handle.write(text)


def tighten(data_dir: Path) -> int:
    """Make the private folders of ``data_dir`` 0700 and their files 0600 (symlinks are not
    followed); returns how many modes changed. A file it may not change is logged."""
    changed = 0
    roots = [data_dir / name for name in PRIVATE_DIRS]
    files = [p for pattern in PRIVATE_FILES for p in data_dir.glob(pattern)]
    for root in roots:
        if not root.is_dir() or root.is_symlink():
            continue
        for folder, dirs, names in os.walk(root):
            changed += _chmod(Path(folder), DIR_MODE)
            files.extend(Path(folder, name) for name in names)
            dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(folder, d))]
    for path in files:
        changed += _chmod(path, FILE_MODE)
    return changed


def _chmod(path: Path, mode: int) -> int:
    try:
        st = os.lstat(path)
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            return 0  # symlinks, sockets (the broker makes its own 0600)
        if stat.S_IMODE(st.st_mode) & ~mode == 0:
            return 0
        os.chmod(path, stat.S_IMODE(st.st_mode) & mode)
        return 1
    except FileNotFoundError:
        return 0
    except OSError as exc:
        log.warning("could not make %s private (chmod %o): %s", path, mode, exc)
        return 0
