"""The HTML report opens in headless Chromium and shows its charts.

Chromium is the Debian package ``chromium`` (scripts/test.sh installs it); a missing browser
fails the test with that instruction, it is never skipped.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from PIL import Image

from tdauto.monitoring import samples
from tdauto.monitoring.reports import CHART_IDS, write_report
from tdauto.settings import Settings
from tdauto.store import FileStore
from tests.support.history import write_daily_runs, write_history

NO_BROWSER = "chromium not found: apt-get install -y chromium (scripts/test.sh does)"


def chromium(tmp_path: Path, *args: str) -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    assert binary is not None, NO_BROWSER
    profile = tmp_path / f"profile-{time.monotonic_ns()}"
    argv = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--no-first-run",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=10000",
        *args,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def chart(dom: str, chart_id: str) -> str:
    """The rendered DOM of one chart's section."""
    start = dom.index(f'id="chart-{chart_id}"')
    end = dom.find("<section", start)
    return dom[start : end if end > 0 else len(dom)]


def drawn_bars(svg: str) -> int:
    """Bars of a plotly bar trace with a height (an empty one is ``M x,y V y ...``)."""
    bars = re.findall(r'<g class="point"><path d="M[\d.]+,([\d.]+)V([\d.]+)', svg)
    return sum(1 for top, bottom in bars if top != bottom)


def test_report_renders_its_charts_in_chromium(tmp_path: Path) -> None:
    # Given five hours of runs and host samples
    settings = Settings(data_dir=tmp_path / "data", host="h1")
    store = FileStore(settings.data_path)
    now = datetime.now(UTC)
    write_history(store, 500, start=now - timedelta(hours=5))
    for minute in range(0, 300, 5):
        ts = (now - timedelta(minutes=300 - minute)).timestamp()
        sample = {"ts": ts, "host": "h1", "cpu_percent": 20 + minute % 50,
                  "memory_percent": 40.0, "disk_percent": 55 + minute / 100}  # fmt: skip
        store.append_history(samples.HISTORY, sample, 1000)
    # When a report of the last six hours is written and opened in the browser
    made = write_report(store, settings, now - timedelta(hours=6), now)
    url = Path(made["html"]).as_uri()
    dom = chromium(tmp_path, "--dump-dom", url)
    shot = tmp_path / "report.png"
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,1800", url)
    # Then plotly drew every chart (its SVG is made by script: a page that failed is empty)
    for chart in CHART_IDS:
        start = dom.index(f'id="chart-{chart}"')
        assert "main-svg" in dom[start : start + 20000], chart
    assert dom.count('class="main-svg"') >= 2 * len(CHART_IDS)  # plot and hover layers
    assert "trace bars" in dom and "scatterlayer" in dom
    assert 'id="summary"' in dom and "500" in dom
    # And the screenshot is a picture, not a blank page
    image = Image.open(shot).convert("RGB")
    colours = image.getcolors(maxcolors=1_000_000) or []
    white = sum(n for n, rgb in colours if min(rgb) > 245)
    assert len(colours) > 50
    assert white / (image.width * image.height) < 0.97
    # and the JSON holds the same period and counts
    assert made["executions"] == 500


def test_a_daily_task_and_one_failure_draw_visible_points(tmp_path: Path) -> None:
    # Given a week of the usage guide's daily task (one run a day, in hours alone), one of
    # them FAILED, and a single host sample
    settings = Settings(data_dir=tmp_path / "data", host="h1")
    store = FileStore(settings.data_path)
    now = datetime.now(UTC)
    write_daily_runs(store, now, 7, failed=frozenset({3}))
    sample = {"ts": (now - timedelta(hours=2)).timestamp(), "host": "h1", "cpu_percent": 30.0,
              "memory_percent": 45.0, "disk_percent": 60.0}  # fmt: skip
    store.append_history(samples.HISTORY, sample, 1000)
    # When the week's report is opened in the browser
    made = write_report(store, settings, now - timedelta(days=7, hours=1), now)
    dom = chromium(tmp_path, "--dump-dom", Path(made["html"]).as_uri())
    # Then the duration chart draws a point for each day's p50 and p95
    assert chart(dom, "durations").count('<path class="point"') == 2 * 7
    # and the failures chart a bar with a height for the one failure
    assert drawn_bars(chart(dom, "failures")) == 1
    # and the host load chart a point for each metric of the lone sample
    assert chart(dom, "host-load").count('<path class="point"') == 3
    assert made["executions"] == 7 and made["success_rate"] == 0.8571


def test_an_empty_period_says_so_on_each_chart(tmp_path: Path) -> None:
    # Given a store where nothing ran and no host was sampled
    settings = Settings(data_dir=tmp_path / "data", host="h1")
    now = datetime.now(UTC)
    # When the day's report is opened in the browser
    made = write_report(FileStore(settings.data_path), settings, now - timedelta(days=1), now)
    dom = chromium(tmp_path, "--dump-dom", Path(made["html"]).as_uri())
    # Then each chart says why it is empty instead of looking broken
    assert "No run ended in this period" in chart(dom, "executions")
    assert "No run finished in this period" in chart(dom, "durations")
    assert "No failures in this period" in chart(dom, "failures")
    assert "the collect action records them" in chart(dom, "host-load")
