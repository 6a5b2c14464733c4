"""Which store a command uses (issue #19 part 7): ``TDAUTO_DATA_DIR``, else the nearest
``data/enterprise/automation`` up from the current directory, else the per-user default; a
read command never makes an empty store, and says where it looked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tdauto import AutomationSystems, datadir
from tdauto.settings import Settings
from tests.support.cli import definition
from tests.support.datadir import Place, cli_here, write_task_file


@pytest.fixture
def place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Place:
    """No TDAUTO_DATA_DIR, a HOME and XDG_DATA_HOME of this test's own, and a project with
    its store and a subfolder; the current directory is left to each test."""
    return Place.make(tmp_path, monkeypatch)


def test_a_subfolder_of_a_project_uses_the_projects_store(place: Place) -> None:
    place.chdir(place.deep)
    assert Settings().data_path == place.store
    assert AutomationSystems().settings.data_path == place.store  # the facade agrees
    result = cli_here(place, "config")
    assert result.exit_code == 0, result.output
    assert f"data dir: {place.store} (found data/enterprise/automation in {place.project})" in (
        result.stderr
    )
    assert json.loads(result.stdout)["data_dir"] == str(place.store)


def test_a_task_created_at_the_project_root_is_listed_from_a_subfolder(place: Place) -> None:
    place.chdir(place.project)
    created = cli_here(place, "task", "create", "-f", str(write_task_file(place.root, "nightly")))
    assert created.exit_code == 0, created.output
    place.chdir(place.deep)
    listed = cli_here(place, "task", "list")
    assert listed.exit_code == 0, listed.output
    assert "nightly" in listed.stdout


def test_outside_a_project_the_per_user_default_is_used(place: Place) -> None:
    place.chdir(place.empty)
    assert Settings().data_path == place.xdg / "tdauto"
    place.monkeypatch.delenv("XDG_DATA_HOME")
    assert Settings().data_path == place.home / ".local" / "share" / "tdauto"
    result = cli_here(place, "config")
    assert (
        f"per-user default: no data/enterprise/automation in {place.empty} or a parent"
        in result.stderr
    )


def test_the_variable_and_the_argument_win(place: Place) -> None:
    place.chdir(place.deep)
    elsewhere = place.root / "elsewhere"
    place.monkeypatch.setenv("TDAUTO_DATA_DIR", str(elsewhere))
    assert Settings().data_path == elsewhere
    assert datadir.of(Settings()).describe() == f"{elsewhere} (TDAUTO_DATA_DIR)"
    assert AutomationSystems(data_dir=place.root / "arg").settings.data_path == place.root / "arg"


@pytest.mark.parametrize(
    "args",
    [
        ("task", "list"),
        ("task", "show", "nightly"),
        ("task", "run", "nightly"),
        ("exec", "list"),
        ("stats",),
        ("actions",),
        ("config",),
    ],
)
def test_a_read_command_in_an_empty_folder_creates_nothing(
    place: Place, args: tuple[str, ...]
) -> None:
    place.chdir(place.empty)
    result = cli_here(place, *args)
    assert list(place.empty.iterdir()) == []
    assert not (place.xdg / "tdauto").exists()
    if args[0] in ("actions", "config"):  # they need no store, and open none
        assert result.exit_code == 0, result.output
        return
    assert result.exit_code == 3, result.output
    line = result.stderr.strip()
    assert line.count("\n") == 0 and "Traceback" not in result.output
    assert f"no data/enterprise/automation in {place.empty} or a parent" in line
    assert f"no per-user store at {place.xdg / 'tdauto'}" in line
    assert "set TDAUTO_DATA_DIR" in line


def test_a_read_command_on_a_missing_TDAUTO_DATA_DIR_creates_nothing(place: Place) -> None:
    place.chdir(place.empty)
    missing = place.root / "typo"
    result = cli_here(place, "task", "list", TDAUTO_DATA_DIR=str(missing))
    assert result.exit_code == 3, result.output
    assert f"no tdauto store at {missing} (TDAUTO_DATA_DIR)" in result.stderr
    assert not missing.exists()


def test_a_write_command_outside_a_project_makes_the_per_user_store(place: Place) -> None:
    place.chdir(place.empty)
    path = write_task_file(place.root, "nightly")
    result = cli_here(place, "task", "create", "-f", str(path))
    assert result.exit_code == 0, result.output
    assert (place.xdg / "tdauto" / "tasks").is_dir()
    assert list(place.empty.iterdir()) == []  # not ./data/enterprise/automation
    assert definition("nightly")["name"] in cli_here(place, "task", "list").stdout
