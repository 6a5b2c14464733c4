"""Flower and /metrics refuse a short password: one line naming the variable, before anything
starts, and no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from tdauto.cli import main


@pytest.mark.parametrize(
    ("command", "prefix"), [("flower", "TDAUTO_FLOWER"), ("metrics", "TDAUTO_METRICS")]
)
def test_a_password_under_12_characters_is_refused(
    tmp_path: Path, command: str, prefix: str
) -> None:
    env = {
        "TDAUTO_DATA_DIR": str(tmp_path / "data"),
        f"{prefix}_USER": "ops",
        f"{prefix}_PASSWORD": "change-me",
    }
    result = CliRunner().invoke(main, [command, "--port", "0"], env=env)

    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith(f"error: {prefix}_PASSWORD: ")
    assert "9 characters; use at least 12" in lines[0]
    assert "Traceback" not in result.output and "change-me" not in result.output


def test_a_password_of_12_characters_is_accepted() -> None:
    from pydantic import SecretStr

    from tdauto.monitoring.exposure import credentials

    auth = credentials("Flower", "TDAUTO_FLOWER", "ops", SecretStr("x" * 12), "0.0.0.0", False)

    assert auth == ("ops", "x" * 12)
