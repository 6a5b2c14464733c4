"""The README keeps its promises: the two commands first, every setting documented."""

from __future__ import annotations

from pathlib import Path

from tdauto.settings import Settings, settings_table

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


def test_readme_starts_with_run_and_test_commands() -> None:
    head = "\n".join(README.splitlines()[:10])
    assert "tdauto up" in head
    assert "scripts/test.sh" in head
    assert "scripts/test.sh" in (REPO / ".ci" / "run").read_text()


def test_every_setting_is_in_the_readme() -> None:
    for name in Settings.model_fields:
        assert f"TDAUTO_{name.upper()}" in README, name
    # the table is generated: refresh it with `tdauto config --markdown`
    assert settings_table() in README


def test_readme_quotes_the_usage_guide() -> None:
    guide = (REPO / "examples" / "usage_guide.py").read_text()
    for line in guide.splitlines():
        assert line in README
