"""``tdauto metrics``: credentials enforced, and the counters move after a run."""

from __future__ import annotations

import asyncio
import base64
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tdauto import AutomationSystems
from tests.integration.conftest import REPO, cli_env
from tests.support.redis_server import free_port

AUTH = "prom:scrape-pass-ok"


def scrape(url: str, auth: str | None) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), ""


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: dict, name: str, **labels: str) -> float:
    return float(found.get((name, tuple(sorted(labels.items()))), 0.0))


def test_metrics_refuses_to_start_open_on_the_network(redis_url: str, data_dir: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tdauto.cli", "metrics", "--address", "0.0.0.0",
         "--no-auth-on-localhost"],
        env=cli_env(redis_url, data_dir),
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 2
    assert "TDAUTO_METRICS_USER" in done.stderr


def test_metrics_counters_move_after_a_run(
    redis_url: str, data_dir: Path, system: AutomationSystems, workers: object
) -> None:
    port = free_port()
    env = cli_env(
        redis_url, data_dir, TDAUTO_METRICS_USER="prom", TDAUTO_METRICS_PASSWORD="scrape-pass-ok"
    )
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "metrics.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tdauto.cli", "metrics", "--port", str(port)],
        env=env,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                code, _ = scrape(url, None)
                break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError(log_path.read_text()) from None
                time.sleep(0.3)
        # Given the endpoint, which refuses a scrape without credentials
        assert code == 401
        assert scrape(url, "prom:wrong")[0] == 401
        code, text = scrape(url, AUTH)
        assert code == 200
        before = samples(text)
        task = asyncio.run(
            system.create_task(
                name="Metered",
                type="maintenance",
                schedule="daily",
                schedule_config={"hour": 4},
                actions=[{"type": "sleep", "params": {"seconds": 0.2}}, {"type": "fail"}],
                retry={"max": 0},
            )
        )
        # When it runs (and fails in its second action)
        ex = system.trigger_sync(task.id)
        assert system.wait_sync(ex.id, timeout=60).status.value == "FAILED"
        after = samples(scrape(url, AUTH)[1])
        # Then the counters moved by exactly this run
        key = {"task": "Metered", "status": "FAILED"}
        assert value(before, "tdauto_executions_total", **key) == 0
        assert value(after, "tdauto_executions_total", **key) == 1
        assert value(after, "tdauto_actions_total", action="sleep", status="SUCCEEDED") == 1
        assert value(after, "tdauto_actions_total", action="fail", status="FAILED") == 1
        assert value(after, "tdauto_action_duration_seconds_count", action="sleep") == 1
        assert value(after, "tdauto_action_duration_seconds_sum", action="sleep") >= 0.2
        assert value(after, "tdauto_queue_wait_seconds_count", **{"class": "cpu"}) == 2
        # and live state is there: the three pools' samples, queue depths, no collector error
        hosts = {
            dict(labels)["pool"] for (name, labels) in after if name == "tdauto_pool_concurrency"
        }
        assert hosts == {"cpu", "memory", "storage"}
        assert ("tdauto_queue_depth", (("queue", "tdauto.cpu"),)) in after
        errors = {
            dict(k[1])["section"]: v for k, v in after.items() if k[0] == "tdauto_collector_errors"
        }
        assert errors and not any(errors.values()), errors
    finally:
        proc.terminate()
        proc.wait(timeout=20)
