"""Helpers of the restore tests: a store backup file, a data dir's bytes, and a second process
holding the data dir's lock the way ``tdauto up`` does."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HOLD_LOCK = """
import sys, time
from pathlib import Path
from tdauto.uplock import UpLock
UpLock(Path(sys.argv[1])).acquire()
print("held", flush=True)
time.sleep(600)
"""


def write_store_backup(folder: Path, snapshot: dict[str, Any], name: str = "database") -> Path:
    """``snapshot`` as the backup action writes it: gzipped JSON beside its ``.sha256``."""
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / f"{name}-20240601T000000Z-0123abcd.json.gz"
    archive.write_bytes(gzip.compress(json.dumps(snapshot).encode()))
    seal(archive)
    return archive


def seal(archive: Path) -> None:
    """(Re)write ``archive``'s checksum file so it matches its current bytes."""
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    archive.with_name(archive.name + ".sha256").write_text(f"{digest}  {archive.name}\n")


def tree_bytes(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` -> its bytes (None for a directory)."""
    return {
        p.relative_to(root).as_posix(): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


@contextlib.contextmanager
def lock_held_elsewhere(data_dir: Path) -> Iterator[int]:
    """Another live process holds ``data_dir``'s up lock while inside; yields its pid."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(data_dir)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "held", f"lock holder failed to start (exit {proc.poll()})"
        yield proc.pid
    finally:
        proc.kill()
        proc.wait(timeout=10)
