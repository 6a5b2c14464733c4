"""Building a release from an artifact: a tar or zip unpacked, a directory copied, or a file
copied as it is, into a staging directory that ``tdauto.actions.releases`` then renames into
``releases/``. Every archive member is checked before anything is written (tarfile's
``data`` filter, and the same rules for zip), and a copied tree's links must stay inside it.

The staging directory is given as a pinned path (``paths.Folder.pinned``), so writing here
cannot be led out of the app directory by a link planted on the way to it.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import threading
import zipfile
from pathlib import Path, PurePosixPath

from tdauto.errors import ActionError

TAR_EXTS = (".tar.gz", ".tgz", ".tar")
ZIP_EXTS = (".zip",)


def artifact_format(path: Path) -> str:
    """``directory``, ``tar``, ``zip`` or ``file`` (copied as it is)."""
    if path.is_dir():
        return "directory"
    name = path.name.lower()
    if name.endswith(TAR_EXTS):
        return "tar"
    if name.endswith(ZIP_EXTS):
        return "zip"
    return "file"


def check_archive(path: Path) -> int:
    """Members of a tar or zip archive, each checked as ``unpack`` would; raise if unsafe."""
    fmt = artifact_format(path)
    try:
        if fmt == "tar":
            with tarfile.open(path, "r:*") as tar:
                members = tar.getmembers()
                for member in members:
                    _safe_tar_member(path, member, path.parent / "release")
                return len(members)
        if fmt == "zip":
            with zipfile.ZipFile(path) as archive:
                infos = archive.infolist()
                for info in infos:
                    _safe_zip_member(path, info)
                return len(infos)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise ActionError(f"{path} is not a readable {fmt} archive: {exc}", "invalid") from exc
    return 0


def _safe_tar_member(archive: Path, member: tarfile.TarInfo, dest: Path) -> None:
    try:
        tarfile.data_filter(member, str(dest))
    except tarfile.FilterError as exc:
        raise ActionError(
            f"{archive}: refusing unsafe member {member.name!r}: {exc}", "unsafe"
        ) from exc


def _safe_zip_member(archive: Path, info: zipfile.ZipInfo) -> None:
    name = info.filename
    parts = PurePosixPath(name).parts
    mode = info.external_attr >> 16
    why = None
    if name.startswith("/") or "\\" in name or (parts and ":" in parts[0]):
        why = "an absolute path"
    elif ".." in parts:
        why = "a path leading out with '..'"
    elif stat.S_ISLNK(mode):
        why = "a symlink"
    if why:
        raise ActionError(f"{archive}: refusing unsafe member {name!r}: {why}", "unsafe")


def build_release(
    artifact: Path, staging: Path, strip_components: int, cancel: threading.Event
) -> tuple[Path, int]:
    """Unpack or copy ``artifact`` into the empty directory ``staging``.

    Returns the directory that becomes the release (``staging``, or the single directory
    ``strip_components`` levels down) and the number of entries written.
    """
    fmt = artifact_format(artifact)
    if fmt == "tar":
        count = _unpack_tar(artifact, staging, cancel)
    elif fmt == "zip":
        count = _unpack_zip(artifact, staging, cancel)
    elif fmt == "directory":
        count = _copy_tree(artifact, staging, cancel)
    else:
        shutil.copy2(artifact, staging / artifact.name)
        count = 1
    root = staging
    for level in range(strip_components):
        entries = list(root.iterdir())
        if len(entries) != 1 or not entries[0].is_dir() or entries[0].is_symlink():
            raise ActionError(
                f"strip_components={strip_components}: level {level + 1} of {artifact.name} "
                f"holds {sorted(e.name for e in entries)}, not one directory; "
                "lower strip_components",
                "invalid",
            )
        root = entries[0]
    return root, count


def _cancelled(cancel: threading.Event) -> None:
    if cancel.is_set():
        raise ActionError("deploy cancelled", "cancelled")


def _unpack_tar(artifact: Path, dest: Path, cancel: threading.Event) -> int:
    with tarfile.open(artifact, "r:*") as tar:
        members = tar.getmembers()
        for member in members:  # every member is checked before anything is written
            _safe_tar_member(artifact, member, dest)
        for member in members:
            _cancelled(cancel)
            tar.extract(member, dest, filter="data")
    return len(members)


def _unpack_zip(artifact: Path, dest: Path, cancel: threading.Event) -> int:
    with zipfile.ZipFile(artifact) as archive:
        infos = archive.infolist()
        for info in infos:
            _safe_zip_member(artifact, info)
        for info in infos:
            _cancelled(cancel)
            written = Path(archive.extract(info, dest))
            mode = (info.external_attr >> 16) & 0o777
            if mode and not info.is_dir():  # keep executable bits, as tar's data filter does
                written.chmod((mode & 0o755) | 0o600)
    return len(infos)


def _copy_tree(source: Path, dest: Path, cancel: threading.Event) -> int:
    """Copy a directory; symlinks stay links and must not lead out of ``source``."""
    count = 0
    for dirpath, dirnames, filenames in os.walk(source):
        _cancelled(cancel)
        here = Path(dirpath)
        target = dest / here.relative_to(source)
        target.mkdir(exist_ok=True)
        for name in [*dirnames, *filenames]:
            entry = here / name
            if entry.is_symlink():
                resolved = entry.resolve()
                if resolved != source and source not in resolved.parents:
                    raise ActionError(
                        f"{entry} is a symlink leading out of the artifact ({resolved})",
                        "unsafe",
                    )
                (target / name).symlink_to(os.readlink(entry))
            elif name in filenames and entry.is_file():
                shutil.copy2(entry, target / name)
            elif name in filenames:
                continue  # sockets, fifos, devices: not part of a release
            count += 1
        dirnames[:] = [d for d in dirnames if not (here / d).is_symlink()]
    return count
