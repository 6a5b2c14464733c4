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
        redis_url, data_dir, TDAUTO_FLOWER_USER="ops", TDAUTO_FLOWER_PASSWORD="s3cret-pass"
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
        assert status_of(url, "ops:s3cret-pass") == 200
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert (data_dir / "flower.db").exists() or any(data_dir.glob("flower.db*"))
