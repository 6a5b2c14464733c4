"""The usage guide, verbatim, as a script: in local mode and in Redis mode."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tdauto.settings import Settings
from tdauto.store import open_store

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "examples" / "usage_guide.py"
SEED = REPO / "docs" / "automation-systems-guide.md"
"""The guide the project was created from, kept in the repo so a checkout anywhere can test
against it; ``ORIGINAL`` is where the workplace keeps it, checked when present."""
ORIGINAL = REPO.parent / "shared" / "seed" / "automation-systems-guide.md"


def test_example_is_the_guide_verbatim() -> None:
    blocks = re.findall(r"```python\n(.*?)```", SEED.read_text(), re.S)
    assert GUIDE.read_text() == "\n".join(blocks)


def test_the_kept_guide_is_the_original() -> None:
    if ORIGINAL.exists():  # beside the workplace's checkout; a clone elsewhere has only the copy
        assert SEED.read_text() == ORIGINAL.read_text()


def run_guide(cwd: Path, extra_env: dict[str, str]) -> str:
    """The guide run in ``cwd``, a project whose store is ``data/enterprise/automation``
    there (the design's layout, found as git finds ``.git``); HOME and XDG_DATA_HOME are the
    test's, so a store not found there would not land in the real per-user one."""
    (cwd / "data" / "enterprise" / "automation").mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TDAUTO_")}
    env.update(HOME=str(cwd / "home"), XDG_DATA_HOME=str(cwd / "xdg"))
    env.update(extra_env)
    proc = subprocess.run(
        [sys.executable, str(GUIDE)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def next_two_am(now: datetime) -> datetime:
    today = now.replace(hour=2, minute=0, second=0, microsecond=0)
    return today if today > now else today + timedelta(days=1)


@pytest.mark.parametrize("mode", ["local", "redis"])
def test_usage_guide_runs_verbatim(
    mode: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    env: dict[str, str] = {}
    if mode == "redis":
        env["TDAUTO_BROKER_URL"] = request.getfixturevalue("redis_url")
    before = datetime.now(UTC)
    out = run_guide(tmp_path, env)
    match = re.search(r"^Task created: ([0-9a-f]{32})$", out, re.M)
    assert match, out
    assert "Task stats:" in out and "Execution stats:" in out

    # The task is in the store, due at the next 02:00 UTC (the default zone)
    settings = Settings(
        data_dir=tmp_path / "data" / "enterprise" / "automation",
        broker_url=env.get("TDAUTO_BROKER_URL"),
    )
    store = open_store(settings)
    task = store.get_task(match.group(1))
    assert task is not None and task.name == "Daily Backup"
    assert task.next_run_at == next_two_am(before)
    if mode == "local":
        for folder in ("tasks", "executions", "logs", "metrics", "reports"):
            assert (tmp_path / "data" / "enterprise" / "automation" / folder).is_dir()

    # Run twice, it reports the same task
    again = run_guide(tmp_path, env)
    assert f"Task created: {match.group(1)}" in again
    assert len(store.list_tasks()) == 1


def test_usage_guide_honours_timezone(tmp_path: Path) -> None:
    out = run_guide(tmp_path, {"TDAUTO_TIMEZONE": "Asia/Tokyo"})
    task_id = re.search(r"Task created: (\w+)", out).group(1)  # type: ignore[union-attr]
    store = open_store(Settings(data_dir=tmp_path / "data" / "enterprise" / "automation"))
    task = store.get_task(task_id)
    assert task is not None and task.next_run_at is not None
    assert task.next_run_at.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Tokyo")).hour == 2
