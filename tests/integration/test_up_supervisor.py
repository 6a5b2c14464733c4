"""`tdauto up` as a supervisor, through the CLI: killed pools come back, a crash loop stops
it cleanly, every way out stops every process, and one `up` per data dir."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from tests.support.redis_server import free_port
from tests.support.up import (
    REPO,
    local_env,
    pool_pid,
    start_up,
    tdauto,
    tdauto_processes,
    tree,
    wait_for,
)

pytestmark = pytest.mark.integration

TASK = {
    "name": "probe",
    "type": "monitoring",
    "schedule": "once",
    "schedule_config": {"at": "2099-01-01T00:00:00Z"},
    "actions": [{"type": "sleep", "params": {"seconds": 0}}],
}


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return (tmp_path / "data").resolve()


@pytest.fixture
def env(data_dir: Path) -> dict[str, str]:
    return local_env(data_dir, TDAUTO_PLUGINS="tests.integration.plugin_actions")


def stop(up: subprocess.Popen[str], data_dir: Path) -> None:
    """End ``up`` if a test left it running, and check nothing of it is left."""
    if up.poll() is None:
        up.send_signal(signal.SIGINT)
        up.wait(timeout=60)
    assert wait_for(lambda: not tdauto_processes(data_dir), 30, "every tdauto process gone") < 30


def test_a_killed_pool_is_back_within_seconds_and_runs_its_class(
    env: dict[str, str], data_dir: Path, tmp_path: Path
) -> None:
    port = free_port()
    up = start_up(
        {**env, "TDAUTO_METRICS_PORT": str(port), "TDAUTO_METRICS_ADDRESS": "127.0.0.1"},
        "--metrics-no-auth-on-localhost",
    )
    try:
        spec = tmp_path / "probe.json"
        spec.write_text(json.dumps(TASK))
        tdauto(env, "task", "create", "-f", str(spec))
        old = pool_pid(data_dir, "cpu")
        assert old is not None
        killed_at = time.monotonic()
        os.kill(old, signal.SIGKILL)
        # Then the supervisor starts it again, and it answers a ping
        wait_for(lambda: pool_pid(data_dir, "cpu") not in (None, old), 10, "cpu restarted")
        wait_for(lambda: _cpu_answers(env), 15, "the new cpu worker answers")
        print(f"cpu pool back in {time.monotonic() - killed_at:.1f}s after SIGKILL")
        # And a new run of that class succeeds on it
        ran = json.loads(tdauto(env, "task", "run", "probe", "--wait", "--json").stdout)
        assert ran["status"] == "SUCCEEDED" and ran["actions"][0]["queue"].startswith("tdauto.cpu")
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
        assert 'tdauto_process_restarts_total{pool="cpu"} 1.0' in metrics
        assert 'tdauto_process_restarts_total{pool="memory"} 0.0' in metrics
    finally:
        stop(up, data_dir)
    assert up.stdout is not None
    rest = up.stdout.read()
    assert "pool cpu exited unexpectedly (signal SIGKILL" in rest and up.returncode == 0


def _cpu_answers(env: dict[str, str]) -> bool:
    code = (
        "from tdauto import AutomationSystems; import sys; "
        "r = AutomationSystems().app.control.ping(timeout=1) or []; "
        "sys.exit(0 if any(n.startswith('cpu@') for x in r for n in x) else 1)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=REPO,
        capture_output=True,
        timeout=30,
    )
    return proc.returncode == 0


def test_a_crash_loop_stops_up_cleanly_with_the_reason(env: dict[str, str], data_dir: Path) -> None:
    up = start_up(env)
    try:
        started = time.monotonic()
        kills = 0
        while up.poll() is None and kills < 6:
            pid = pool_pid(data_dir, "memory")
            if pid is not None and psutil.pid_exists(pid):
                os.kill(pid, signal.SIGKILL)
                kills += 1
                wait_for(lambda p=pid: pool_pid(data_dir, "memory") != p, 40, "a restart")
        up.wait(timeout=60)
        assert time.monotonic() - started < 60
        assert up.stdout is not None
        out = up.stdout.read()
        assert up.returncode == 1, out
        assert "pool memory exited 5 times within 60s (last signal SIGKILL)" in out
        assert "not restarting it" in out and "stopped." in out
    finally:
        stop(up, data_dir)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_to_up_piped_to_tee_stops_every_process(
    env: dict[str, str], data_dir: Path, tmp_path: Path, sig: signal.Signals
) -> None:
    """`tdauto up | tee log`, one process group as a shell makes it: the terminal's signal
    reaches `up` and `tee` together; `tee` dies first, so `up` writes its goodbye into a
    broken pipe. Its pools must be gone by the time it exits (not left for the pools' own
    parent check to find later)."""
    log = tmp_path / "up.log"
    up = subprocess.Popen(
        [sys.executable, "-m", "tdauto.cli", "up"],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        process_group=0,
    )
    assert up.stdout is not None
    tee = subprocess.Popen(
        ["tee", str(log)], stdin=up.stdout, stdout=subprocess.DEVNULL, process_group=up.pid
    )
    up.stdout.close()  # tee holds the pipe's only reader
    try:
        wait_for(lambda: log.exists() and "ready in" in log.read_text(), 90, "up ready")
        pools = [p for p in tree(up.pid) if p.pid != up.pid]
        assert len(pools) >= 3
        # A second up on the same data dir is refused at once
        second = tdauto(env, "up", check=False, timeout=30)
        assert second.returncode == 2
        assert f"tdauto up is already running for {data_dir} (pid {up.pid})" in second.stderr
        os.killpg(up.pid, sig)
        assert up.wait(timeout=20) == 0  # stopped by its handler, not by the broken pipe
        assert [p for p in pools if p.is_running() and p.status() != "zombie"] == []
        assert tee.wait(timeout=5) is not None
        assert tdauto_processes(data_dir) == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(up.pid, signal.SIGKILL)


def test_a_failed_start_stops_what_it_started(env: dict[str, str], data_dir: Path) -> None:
    # /metrics cannot listen: its port is taken. The pools were already started by then.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        metrics = {
            "TDAUTO_METRICS_PORT": str(port),
            "TDAUTO_METRICS_ADDRESS": "127.0.0.1",
            "TDAUTO_METRICS_USER": "ops",
            "TDAUTO_METRICS_PASSWORD": "a-long-metrics-password",
        }
        failed = tdauto({**env, **metrics}, "up", check=False, timeout=60)
    assert failed.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in failed.stderr
    assert "set TDAUTO_METRICS_PORT to a free port" in failed.stderr
    assert "Traceback" not in failed.stderr + failed.stdout
    assert wait_for(lambda: not tdauto_processes(data_dir), 20, "nothing left") < 20


def test_a_killed_up_leaves_no_pool_and_the_next_up_takes_over(
    env: dict[str, str], data_dir: Path
) -> None:
    up = start_up(env)
    pools = [p for p in tree(up.pid) if p.pid != up.pid]
    up.kill()
    up.wait()
    # The pools see their parent gone and shut down (Celery's warm shutdown)
    _gone, alive = psutil.wait_procs(pools, timeout=30)
    assert alive == []
    again = start_up(env)
    try:
        assert again.poll() is None
    finally:
        stop(again, data_dir)


def test_start_restarts_a_killed_pool_and_a_second_system_takes_over_when_it_stops(
    data_dir: Path,
) -> None:
    from tdauto import AutomationSystems

    os.environ.setdefault("PYTHONPATH", str(REPO))
    first = AutomationSystems(data_dir=data_dir)
    second = AutomationSystems(data_dir=data_dir)
    first.start()
    try:
        old = pool_pid(data_dir, "storage")
        assert old is not None
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: pool_pid(data_dir, "storage") not in (None, old), 10, "restarted")
        # A second system on the same data dir uses these pools instead of starting its own
        pools = {p.pid for p in tdauto_processes(data_dir)}
        second.start()
        time.sleep(3)
        assert {p.pid for p in tdauto_processes(data_dir)} == pools
        # until the first stops: then it starts its own
        first.stop()
        wait_for(lambda: pool_pid(data_dir, "cpu") not in (None, *pools), 15, "taken over")
        assert len(tdauto_processes(data_dir)) >= 3
    finally:
        first.stop()
        second.stop()
    assert wait_for(lambda: not tdauto_processes(data_dir), 30, "nothing left") < 30
