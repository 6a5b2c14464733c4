"""`tdauto flower` needs credentials, and enforces them."""

from __future__ import annotations

import base64
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.integration.conftest import REPO, cli_env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_flower_refuses_to_start_without_credentials(redis_url: str, data_dir: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tdauto.cli", "flower", "--address", "0.0.0.0"],
        env=cli_env(redis_url, data_dir),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert proc.returncode != 0
    assert "TDAUTO_FLOWER_USER" in proc.stderr


def status_of(url: str, auth: str | None) -> int:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_flower_requires_basic_auth(redis_url: str, data_dir: Path) -> None:
    port = free_port()
    env = cli_env(
        redis_url, data_dir, TDAUTO_FLOWER_USER="ops", TDAUTO_FLOWER_PASSWORD="s3cret-pass-ok"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "tdauto.cli", "flower", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 60
        while True:
            try:
                code = status_of(url, None)
                break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.5)
        assert code == 401
        assert status_of(url, "ops:wrong") == 401
        assert status_of(url, "ops:s3cret-pass-ok") == 200
        # /metrics lists task and worker names: the same credentials, or nothing
        metrics = f"http://127.0.0.1:{port}/metrics"
        assert status_of(metrics, None) == 401
        assert status_of(metrics, "ops:wrong") == 401
        assert status_of(metrics, "ops:s3cret-pass-ok") == 200
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert (data_dir / "flower.db").exists() or any(data_dir.glob("flower.db*"))
    # its state lists every task and worker: the owner's only
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in data_dir.glob("flower.db*")}
    assert modes == {name: "0o600" for name in modes}


def get_json(url: str, auth: str) -> object:
    import json

    request = urllib.request.Request(url)
    request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_flower_lists_a_triggered_tasks_actions_under_readable_names(
    redis_url: str, data_dir: Path, system: object, workers: object
) -> None:
    import asyncio

    from tdauto import AutomationSystems

    assert isinstance(system, AutomationSystems)
    port = free_port()
    auth = "ops:s3cret-pass-ok"
    env = cli_env(
        redis_url, data_dir, TDAUTO_FLOWER_USER="ops", TDAUTO_FLOWER_PASSWORD="s3cret-pass-ok"
    )
    log_path = data_dir / "flower.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tdauto.cli", "flower", "--port", str(port)],
        env=env,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )
    try:
        # Given Flower up (it answers, and refuses a request without credentials)
        api = f"http://127.0.0.1:{port}/api/tasks"
        deadline = time.monotonic() + 60
        while True:
            try:
                assert status_of(api, None) == 401
                break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError(log_path.read_text()) from None
                time.sleep(0.5)
        task = asyncio.run(
            system.create_task(
                name="Nightly Report",
                type="monitoring",
                schedule="daily",
                schedule_config={"hour": 3},
                actions=[{"type": "sleep", "params": {"seconds": 0.1}}, {"type": "collect"}],
            )
        )
        # When the task runs (again, until Flower's event stream has seen a whole run)
        wanted = {"tdauto.action[Nightly Report/sleep]", "tdauto.action[Nightly Report/collect]"}
        seen: dict[str, str] = {}
        for _ in range(10):
            ex = system.trigger_sync(task.id)
            assert system.wait_sync(ex.id, timeout=60).status.value == "SUCCEEDED"
            for _ in range(20):
                tasks = get_json(api, auth)
                assert isinstance(tasks, dict)
                seen = {
                    t["name"]: str(t.get("args"))
                    for t in tasks.values()
                    if ex.id in str(t.get("args"))
                }
                if wanted <= set(seen):
                    break
                time.sleep(0.5)
            if wanted <= set(seen):
                break
        # Then both actions are listed under names carrying the task's, with the run's id
        assert wanted <= set(seen), seen
        assert all(ex.id in args for args in seen.values())
        assert status_of(api, None) == 401
    finally:
        proc.terminate()
        proc.wait(timeout=20)
