"""Reports: what ran, how long it took, what failed and how loaded the hosts were over a
period, as JSON and as an HTML page with charts (plotly) that a person opens in a browser.

The data comes from rollups (hour buckets, or minutes for periods up to six hours) and the
host samples of ``collect``; no execution record is read, so a report of a month costs the
same as one of a day. Files go to ``reports/`` under the data dir as
``report-<UTC time>.json`` and ``.html``. The page loads ``plotly.min.js`` from beside it
(written once in ``reports/``) unless ``self_contained``, which inlines it (about 4.6 MB
per page, for a report sent on its own).
"""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tdauto.models import ExecutionStatus
from tdauto.monitoring import samples
from tdauto.monitoring.histogram import percentile
from tdauto.monitoring.rollups import fields
from tdauto.monitoring.stats import execution_stats
from tdauto.private import private_dir, write_text
from tdauto.settings import Settings
from tdauto.store.backend import ROLLUP_TIERS, Store

STATUS_COLOURS = {
    "SUCCEEDED": "#2e7d32",
    "FAILED": "#c62828",
    "TIMED_OUT": "#ef6c00",
    "CANCELLED": "#6d4c41",
    "SKIPPED": "#9e9e9e",
    "MISSED": "#6a1b9a",
}
CHART_IDS = ("executions", "durations", "failures", "host-load")
DOTS = "lines+markers"
"""Scatter traces draw their points too: a run in an hour alone between empty ones (a daily
task's) is a point with no line to either side, which a line-only trace does not draw."""


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def report_data(store: Store, settings: Settings, since: datetime, until: datetime) -> dict:
    """Everything the report shows, JSON-ready."""
    start, end = since.timestamp(), until.timestamp()
    tier = "m" if end - start <= 6 * 3600 else "h"
    width = ROLLUP_TIERS[tier]
    starts = list(range(int(start // width) * width, int(end) + 1, width))
    buckets = store.read_rollups([f"{tier}:{t}" for t in starts])
    per_status: dict[str, list[float]] = {s.value: [] for s in ExecutionStatus if s.terminal}
    p50, p95 = [], []
    for b in buckets:
        counts = {k[0]: v for k, v in fields(b, "st", 1).items()}
        for status, column in per_status.items():
            column.append(counts.get(status, 0.0))
        hist = {k[0]: v for k, v in fields(b, "ed", 1).items()}
        p50.append(percentile(hist, 0.5, b.get("ed_max")))
        p95.append(percentile(hist, 0.95, b.get("ed_max")))
    summary = execution_stats(store, since, settings, now_ts=end)
    failures = {
        name: row["by_status"].get("FAILED", 0) + row["by_status"].get("TIMED_OUT", 0)
        for name, row in summary["by_task"].items()
    }
    hosts: dict[str, dict[str, list[Any]]] = {}
    for metric in ("cpu_percent", "memory_percent", "disk_percent"):
        for host, points in _by_host(store, metric, start, end).items():
            row = hosts.setdefault(host, {})
            row[metric] = [[_iso(ts), v] for ts, v in points]
    return {
        "format": "tdauto-report/1",
        "generated_at": datetime.now(UTC).isoformat(),
        "period": {"since": since.isoformat(), "until": until.isoformat(), "bucket_s": width},
        "summary": summary,
        "series": {
            "time": [_iso(t) for t in starts],
            "executions_by_status": {k: v for k, v in per_status.items() if any(v)},
            "duration_p50_s": p50,
            "duration_p95_s": p95,
        },
        "failures_by_task": {k: v for k, v in sorted(failures.items()) if v},
        "hosts": hosts,
    }


def _by_host(
    store: Store, metric: str, start: float, end: float
) -> dict[str, list[tuple[float, float]]]:
    found: dict[str, list[tuple[float, float]]] = {}
    for record in samples.recent(store, samples.HISTORY, start):
        ts = float(record.get("ts", 0))
        value = record.get(metric)
        if ts <= end and isinstance(value, int | float):
            found.setdefault(str(record.get("host")), []).append((ts, float(value)))
    return {host: sorted(points) for host, points in found.items()}


def _figures(data: dict[str, Any]) -> list[tuple[str, str, Any]]:
    import plotly.graph_objects as go

    layout = {"margin": {"l": 50, "r": 20, "t": 40, "b": 40}, "height": 340}
    times = data["series"]["time"]
    period = data["period"]
    layout_t = {**layout, "xaxis": {"range": [period["since"], period["until"]]}}  # aligned
    runs = go.Figure(layout={**layout_t, "barmode": "stack", "title": "Executions by status"})
    for status, counts in data["series"]["executions_by_status"].items():
        runs.add_bar(x=times, y=counts, name=status, marker_color=STATUS_COLOURS.get(status))
    durations = go.Figure(layout={**layout_t, "title": "Run duration (s)"})
    for name, size in (("p50", 9), ("p95", 5)):  # a lone run's p50 and p95 are often equal
        durations.add_scatter(
            x=times,
            y=data["series"][f"duration_{name}_s"],
            name=name,
            mode=DOTS,
            marker={"size": size},
        )
    fails = data["failures_by_task"]
    failures = go.Figure(layout={**layout, "title": "Failures by task"})
    failures.add_bar(x=list(fails), y=list(fails.values()), marker_color="#c62828")
    if not data["series"]["executions_by_status"]:
        _say(runs, "No run ended in this period")
    if all(v is None for v in data["series"]["duration_p50_s"]):
        _say(durations, "No run finished in this period")
    if not fails:
        _say(failures, "No failures in this period")
    load = go.Figure(layout={**layout_t, "title": "Host load (%)", "yaxis": {"range": [0, 100]}})
    for host, metrics in data["hosts"].items():
        for metric, points in metrics.items():
            load.add_scatter(
                x=[p[0] for p in points],
                y=[p[1] for p in points],
                name=f"{host} {metric.removesuffix('_percent')}",
                mode=DOTS,
                marker={"size": 4},
            )
    if not data["hosts"]:
        _say(load, "No host samples in this period (the collect action records them)")
    return [
        ("executions", "Executions", runs),
        ("durations", "Durations", durations),
        ("failures", "Failures", failures),
        ("host-load", "Host load", load),
    ]


def _say(figure: Any, text: str) -> None:
    """A line in the middle of an empty chart, so it does not look broken."""
    figure.add_annotation(
        text=text, xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False, font={"size": 16}
    )


def render_html(data: dict[str, Any], plotly_js: str) -> str:
    """The page: a summary table and four charts; ``plotly_js`` is a ``<script>`` tag."""
    s = data["summary"]
    d = s["duration_seconds"]
    rows = [
        ("Executions", s["total"]),
        ("Success rate", "-" if s["success_rate"] is None else f"{s['success_rate']:.1%}"),
        (
            "Duration avg / p50 / p95 / max (s)",
            f"{d['avg']} / {d['p50']} / {d['p95']} / {d['max']}",
        ),
        ("Missed / skipped", f"{s['scheduler']['missed']} / {s['scheduler']['skipped']}"),
        ("By status", ", ".join(f"{k} {v}" for k, v in sorted(s["by_status"].items())) or "-"),
    ]
    table = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows
    )
    charts = "".join(
        f"<section><h2>{html.escape(title)}</h2>"
        f"{fig.to_html(full_html=False, include_plotlyjs=False, div_id=f'chart-{cid}')}</section>"
        for cid, title, fig in _figures(data)
    )
    period = data["period"]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>tdauto report {html.escape(period["since"])} to {html.escape(period["until"])}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;color:#222;background:#fff}}
table{{border-collapse:collapse}}
th,td{{text-align:left;padding:4px 12px;border-bottom:1px solid #ddd}}
section{{margin-top:1.5em}}</style>
{plotly_js}
</head><body>
<h1>tdauto report</h1>
<p>From {html.escape(period["since"])} to {html.escape(period["until"])}
(generated {html.escape(data["generated_at"])}).</p>
<table id="summary">{table}</table>
{charts}
</body></html>
"""


def write_report(
    store: Store,
    settings: Settings,
    since: datetime,
    until: datetime | None = None,
    self_contained: bool = False,
    folder: Path | None = None,
) -> dict[str, Any]:
    """Build the report of ``[since, until]`` and save its JSON and HTML; returns the paths
    and the summary."""
    from plotly.offline import get_plotlyjs

    until = until or datetime.now(UTC)
    data = report_data(store, settings, since, until)
    out = folder or settings.data_path / "reports"
    private_dir(out)
    stamp = f"{until:%Y%m%dT%H%M%SZ}"
    if self_contained:
        script = f'<script type="text/javascript">{get_plotlyjs()}</script>'
    else:
        bundle = out / "plotly.min.js"
        js = get_plotlyjs()
        if not bundle.exists() or bundle.stat().st_size != len(js.encode()):
            write_text(bundle, js)
        script = '<script src="plotly.min.js"></script>'
    json_path = out / f"report-{stamp}.json"
    html_path = out / f"report-{stamp}.html"
    write_text(json_path, json.dumps(data, indent=2, default=str))
    write_text(html_path, render_html(data, script))
    return {
        "html": str(html_path),
        "json": str(json_path),
        "period": data["period"],
        "executions": data["summary"]["total"],
        "success_rate": data["summary"]["success_rate"],
    }


def default_since(days: float = 1.0) -> datetime:
    return datetime.now(UTC) - timedelta(days=days)
