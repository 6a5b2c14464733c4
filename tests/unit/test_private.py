"""What holds records or output under the data dir is the owner's only: files 0600, folders
0700, when created and, for what an earlier tdauto left readable, once the system starts."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tdauto import AutomationSystems
from tdauto.actions import load_plugins
from tdauto.processes import spawn_worker
from tdauto.settings import Settings
from tdauto.store.files import FileStore
from tests.support.actions import make_ctx, run


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """The common 022, under which a file made without a mode is readable by everyone."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_records_logs_backups_and_worker_logs_are_created_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_plugins([])
    settings = Settings(data_dir=tmp_path / "data")
    store = FileStore(settings.data_path)
    store.append_log("exec-1", "line\n")
    backup = Path(run("backup", make_ctx(settings, store), {})["path"])  # the store's backup
    monkeypatch.setattr("tdauto.processes.sys.executable", "/bin/true")
    spawn_worker("cpu", settings, settings.data_path / "logs" / "processes").wait()

    data = settings.data_path
    files = [
        data / "logs" / "exec-1.log",
        backup,
        backup.with_name(backup.name + ".sha256"),
        data / "logs" / "processes" / "worker-cpu.log",
        data / "state" / "store.lock",
    ]
    assert {str(p.relative_to(data)): oct(mode(p)) for p in files} == {
        str(p.relative_to(data)): "0o600" for p in files
    }
    folders = [p for p in data.rglob("*") if p.is_dir()]
    assert {"backups/database", "logs/processes", "state/locks"} <= {
        str(p.relative_to(data)) for p in folders
    }
    assert {str(p.relative_to(data)): oct(mode(p)) for p in folders} == {
        str(p.relative_to(data)): "0o700" for p in folders
    }


def test_start_tightens_what_an_earlier_version_left_readable(tmp_path: Path) -> None:
    data = tmp_path / "data"
    FileStore(data)
    readable = [
        data / "tasks" / "t.json",
        data / "executions" / "e.json",
        data / "logs" / "e.log",
        data / "logs" / "processes" / "worker-cpu.log",
        data / "backups" / "database" / "database-1.json.gz",
        data / "flower.db",
    ]
    for path in readable:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
        path.chmod(0o644)
    for folder in {p.parent for p in readable} | {data / "state"}:
        folder.chmod(0o755)
    site = data / "site" / "index.html"  # an app deployed into the data dir: not tdauto's
    site.parent.mkdir()
    site.write_text("<h1>hi</h1>")

    system = AutomationSystems(data_dir=data)
    system.start(workers=False)
    system.stop()

    assert {p.name: oct(mode(p)) for p in readable} == {p.name: "0o600" for p in readable}
    folders = {p.parent for p in readable if p.parent != data} | {data / "state"}
    assert {p.name: oct(mode(p)) for p in folders} == {p.name: "0o700" for p in folders}
    assert (oct(mode(site)), oct(mode(site.parent))) == ("0o644", "0o755")
