"""Places for tests of how the data dir is found: a project with its store and a subfolder,
an empty folder outside it, and a HOME and XDG_DATA_HOME of the test's own; the CLI run in
the current directory without ``TDAUTO_DATA_DIR``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from tdauto import cli
from tests.support.cli import definition


@dataclass
class Place:
    root: Path
    project: Path  # holds data/enterprise/automation
    store: Path
    deep: Path  # a subfolder of the project
    empty: Path  # outside any project
    home: Path
    xdg: Path
    monkeypatch: pytest.MonkeyPatch

    @classmethod
    def make(cls, root: Path, monkeypatch: pytest.MonkeyPatch) -> Place:
        project = root / "project"
        store = project / "data" / "enterprise" / "automation"
        deep = project / "src" / "deep"
        empty, home, xdg = root / "empty", root / "home", root / "xdg"
        for folder in (store, deep, empty, home, xdg):
            folder.mkdir(parents=True)
        monkeypatch.delenv("TDAUTO_DATA_DIR", raising=False)
        monkeypatch.delenv("TDAUTO_BROKER_URL", raising=False)
        monkeypatch.setenv("HOME", str(home))
        monkeypatch.setenv("XDG_DATA_HOME", str(xdg))
        return cls(root, project, store, deep, empty, home, xdg, monkeypatch)

    def chdir(self, folder: Path) -> None:
        self.monkeypatch.chdir(folder)


def cli_here(place: Place, *args: str, **env: str | None) -> Result:
    """``tdauto ARGS`` in the current directory, the data dir found, not given."""
    environ: dict[str, str | None] = {
        "TDAUTO_DATA_DIR": None,
        "TDAUTO_BROKER_URL": None,
        "HOME": str(place.home),
        "XDG_DATA_HOME": str(place.xdg),
        "COLUMNS": "1000",
    }
    return CliRunner().invoke(cli.main, list(args), env={**environ, **env})


def write_task_file(folder: Path, name: str) -> Path:
    """A task file holding one valid task named ``name``."""
    path = folder / f"{name}.json"
    path.write_text(json.dumps(definition(name)))
    return path
