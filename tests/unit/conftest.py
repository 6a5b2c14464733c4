"""Fixtures the unit tests share: ``work`` inside the allowed paths (each module's
``settings`` fixture allows it), ``outside`` beyond them; ``data``, a data dir not yet made,
and ``system``, the facade on it (the CLI tests' store)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tdauto import AutomationSystems


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A directory inside the allowed paths, beside the data dir."""
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory outside the allowed paths."""
    path = tmp_path / "outside"
    path.mkdir()
    return path


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def system(data: Path) -> AutomationSystems:
    return AutomationSystems(data_dir=data)
