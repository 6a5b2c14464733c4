"""Folders the action tests share: ``work`` inside the allowed paths (each module's
``settings`` fixture allows it), ``outside`` beyond them."""

from __future__ import annotations

from pathlib import Path

import pytest


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
