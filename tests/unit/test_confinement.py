"""Issue #18 finding 1: a symlink planted inside an allowed folder never leads an action out.

Each action is run as the engine runs it (params validated with the settings, then the
handler) on a layout where one of the folders it works in is a symlink to a folder outside
``TDAUTO_ALLOWED_PATHS``. The run fails with one line naming the param, and the outside
folder is exactly as it was: nothing deleted, moved or written there.
"""

from __future__ import annotations

import tarfile
from functools import partial
from pathlib import Path

import pytest

from tdauto.actions.registry import load_plugins
from tdauto.errors import ActionError, InvalidInput
from tdauto.models import ExecutionStatus
from tdauto.settings import Settings
from tests.support import actions
from tests.support.actions import run
from tests.support.engine import create, run_once, runtime
from tests.support.files import contents, fill, plant, swap_after_check

store = actions.store  # the fixture: a FileStore on the settings fixture's data path
make_ctx = partial(actions.make_ctx, task_name="confine")

RELEASES = {f"2020010{n}T000000Z-0000000{n}/VERSION": f"old {n}" for n in range(1, 4)}
BACKUPS = {
    f"src-2020010{n}T000000Z-0000000{n}.tar.gz{ext}": f"backup {n}"
    for n in range(1, 4)
    for ext in ("", ".sha256")
}
TASK = {
    "name": "confine",
    "type": "deployment",
    "schedule": "daily",
    "schedule_config": {"hour": 2},
}


@pytest.fixture
def settings(tmp_path: Path, work: Path) -> Settings:
    load_plugins([])
    data = tmp_path / "data"
    data.mkdir()
    allow = ["touch", "pwd"]
    return Settings(
        data_dir=data,
        allowed_paths=[data, work],
        shell_allow=allow,
        update_allow=allow,
        check_allow=allow,
    )


def artifact(work: Path, version: str) -> Path:
    work.mkdir(exist_ok=True)
    path = work / f"v{version}.tar"
    source = fill(work / f"src-{version}", {"VERSION": version})
    with tarfile.open(path, "w") as tar:
        tar.add(source / "VERSION", arcname="VERSION")
    return path


def refused(param: str, call: partial[object]) -> str:
    """Run ``call``; it must fail with an error whose message starts with ``param``."""
    with pytest.raises((ActionError, InvalidInput)) as caught:
        call()
    message = str(caught.value)
    assert message.startswith(f"{param}: "), message
    assert "\n" not in message
    return message


def deploy(settings, store, work, version, execution="d", **params):
    args = {"artifact": str(artifact(work, version)), "app_dir": str(work / "app")} | params
    return partial(run, "deploy", make_ctx(settings, store, execution), args)


# --- deploy and rollback ----------------------------------------------------------------------


def test_deploy_refuses_a_releases_symlink_and_prunes_nothing_outside(
    settings, store, work, outside
):
    fill(outside, RELEASES)
    before = contents(outside)
    plant(work / "app" / "releases", outside)

    message = refused("app_dir", deploy(settings, store, work, "1", keep=1))

    assert "releases is a symlink" in message and "replace it with a real directory" in message
    assert contents(outside) == before
    assert not (work / "app" / "current").exists()


def test_deploy_refuses_a_rolled_back_symlink_and_prunes_nothing_outside(
    settings, store, work, outside
):
    fill(outside, RELEASES)
    before = contents(outside)
    deploy(settings, store, work, "1", "d1")()
    plant(work / "app" / "rolled_back", outside)

    message = refused("app_dir", deploy(settings, store, work, "2", "d2", keep=1))

    assert "rolled_back is a symlink" in message
    assert contents(outside) == before
    assert (work / "app" / "current" / "VERSION").read_text() == "1"


def test_deploy_refuses_a_lock_file_symlink_and_writes_nothing_outside(
    settings, store, work, outside
):
    (work / "app" / ".tdauto").mkdir(parents=True)
    (work / "app" / ".tdauto" / "lock").symlink_to(outside / "lock")

    message = refused("app_dir", deploy(settings, store, work, "1"))

    assert "lock is a symlink" in message
    assert contents(outside) == {}


def test_rollback_refuses_a_rolled_back_symlink_and_moves_no_release_out(
    settings, store, work, outside
):
    deploy(settings, store, work, "1", "d1")()
    live = deploy(settings, store, work, "2", "d2")()["release"]
    plant(work / "app" / "rolled_back", outside)
    ctx = make_ctx(settings, store, "rb")

    refused("app_dir", partial(run, "rollback", ctx, {"app_dir": str(work / "app")}))

    assert contents(outside) == {}
    assert (work / "app" / "releases" / live / "VERSION").read_text() == "2"
    assert (work / "app" / "current" / "VERSION").read_text() == "2"


def test_rollback_refuses_a_releases_symlink(settings, store, work, outside):
    deploy(settings, store, work, "1", "d1")()
    deploy(settings, store, work, "2", "d2")()
    (work / "app" / "releases").rename(work / "moved")
    fill(outside, RELEASES)
    before = contents(outside)
    plant(work / "app" / "releases", outside)
    ctx = make_ctx(settings, store, "rb")

    refused("app_dir", partial(run, "rollback", ctx, {"app_dir": str(work / "app")}))

    assert contents(outside) == before


def test_verify_runs_no_check_command_in_a_release_swapped_for_a_symlink(
    settings, store, work, outside
):
    release = deploy(settings, store, work, "1", "d1")()["release"]
    ctx = make_ctx(settings, store, "v")
    # after its last check (app_dir, then the live release current leads to)
    swap_after_check(ctx, work / "app" / "releases" / release, outside, calls=2)
    params = {"app_dir": str(work / "app"), "checks": [{"command": ["touch", "planted"]}]}

    refused("app_dir", partial(run, "verify", ctx, params))

    assert contents(outside) == {}


def test_validate_runs_no_check_in_a_folder_swapped_for_a_symlink(settings, store, work, outside):
    built = artifact(work / "dist", "1")
    ctx = make_ctx(settings, store, "v")
    # after its last check: the folder the check command runs in
    swap_after_check(ctx, work / "dist", outside, calls=2)
    params = {"artifact": str(built), "check": ["touch", "planted"]}

    refused("artifact", partial(run, "validate", ctx, params))

    assert contents(outside) == {}


def test_a_deploy_run_fails_naming_app_dir_and_leaves_the_outside_alone(settings, work, outside):
    fill(outside, RELEASES)
    before = contents(outside)
    plant(work / "app" / "releases", outside)
    rt = runtime(settings)
    params = {"artifact": str(artifact(work, "1")), "app_dir": str(work / "app"), "keep": 1}
    task = create(rt, TASK | {"actions": [{"type": "deploy", "params": params}]})

    ex = run_once(rt, task)

    assert ex.status is ExecutionStatus.FAILED
    (failed,) = ex.actions
    assert (failed.error or "").removeprefix("ActionError: ").startswith("app_dir: ")
    assert failed.error_kind == "not_allowed" and "releases is a symlink" in (ex.error or "")
    assert contents(outside) == before


# --- backup -----------------------------------------------------------------------------------


def test_backup_refuses_a_target_folder_symlink_and_writes_or_prunes_nothing_outside(
    settings, store, work, outside
):
    fill(work / "src", {"f": "data"})
    fill(outside, BACKUPS, old=True)
    before = contents(outside)
    plant(work / "backups" / "src", outside)
    params = {"kind": "directory", "path": str(work / "src"), "dest": str(work / "backups")}
    ctx = make_ctx(settings, store, "b")

    message = refused("dest", partial(run, "backup", ctx, params | {"keep": 1}))

    assert "src is a symlink" in message
    assert contents(outside) == before


# --- cleanup ----------------------------------------------------------------------------------


def test_cleanup_never_follows_a_subfolder_symlink(settings, store, work, outside):
    fill(outside, {"precious.log": "keep"}, old=True)
    fill(work / "logs", {"old.log": "x"}, old=True)
    plant(work / "logs" / "elsewhere", outside)
    ctx = make_ctx(settings, store, "c")

    out = run("cleanup", ctx, {"path": str(work / "logs"), "older_than": "1day"})

    assert out["removed"] == [str(work / "logs" / "old.log")]
    assert contents(outside) == {"precious.log": "keep"}


def test_cleanup_refuses_a_folder_swapped_for_a_symlink_after_its_check(
    settings, store, work, outside
):
    fill(outside, {"logs/precious.log": "keep"}, old=True)
    fill(work / "site" / "logs", {"old.log": "x"}, old=True)
    ctx = make_ctx(settings, store, "c")
    swap_after_check(ctx, work / "site", outside)

    params = {"path": str(work / "site" / "logs"), "older_than": "1day"}
    message = refused("path", partial(run, "cleanup", ctx, params))

    assert "site is a symlink" in message
    assert contents(outside) == {"logs": "/", "logs/precious.log": "keep"}


# --- a program's working directory ------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("shell", {"argv": ["touch", "planted"]}),
        ("update", {"commands": [["touch", "planted"]]}),
    ],
)
def test_a_cwd_swapped_for_a_symlink_after_its_check_runs_nothing_outside(
    settings, store, work, outside, name, params
):
    (work / "here").mkdir()
    ctx = make_ctx(settings, store, "s")
    swap_after_check(ctx, work / "here", outside)

    refused("cwd", partial(run, name, ctx, params | {"cwd": str(work / "here")}))

    assert contents(outside) == {}


def test_shell_runs_in_its_cwd_and_reports_the_path_given(settings, store, work):
    (work / "here").mkdir()
    out = run("shell", make_ctx(settings, store, "s"), {"argv": ["pwd"], "cwd": str(work / "here")})
    assert out["cwd"] == str(work / "here") and out["output"].strip() == str(work / "here")
