"""Issue #18 finding 9 (printing): text from records with ESC, OSC, NUL, newlines, bidi
controls or rich markup prints as visible escapes, never as raw characters a terminal acts on."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from tdauto import AutomationSystems
from tdauto.models import Task
from tdauto.resources.view import render
from tdauto.store.files import FileStore
from tests.support.cli import run_cli, store_execution, store_task, unsafe_chars
from tests.support.restore import make_task, write_store_backup

ESC = "\x1b[31mred\x1b[0m"
OSC = "\x1b]0;owned\x07"
NASTY = f"n{ESC}{OSC}nul\x00line\nnext\u202eRLO\u2028[red]markup[/red]:smile:del\x7f"


@pytest.fixture
def task(system: AutomationSystems) -> Task:
    return store_task(system, NASTY)


def assert_escaped(output: str) -> None:
    assert not unsafe_chars(output), f"raw {unsafe_chars(output)!r} in:\n{output}"
    assert "\\x1b[31mred" in output and "\\x1b]0;owned\\x07" in output
    assert "nul\\x00line\\x0anext\\u{202e}RLO\\u{2028}" in output
    assert "[red]markup[/red]:smile:del\\x7f" in output  # markup and emoji codes as typed


def test_task_list_and_show_print_a_nasty_name_escaped(data, task) -> None:
    listed = run_cli(data, "task", "list", "--wide")  # the name whole, to see all of it
    assert listed.exit_code == 0, listed.output
    assert_escaped(listed.output)
    shown = run_cli(data, "task", "show", task.id)  # the describe view
    assert shown.exit_code == 0, shown.output
    assert_escaped(shown.output)
    # -o json: JSON's own escapes, markup as typed
    as_json = run_cli(data, "task", "show", task.id, "-o", "json")
    assert not unsafe_chars(as_json.output), as_json.output
    assert "\\u001b]0;owned\\u0007nul\\u0000line\\nnext\\u202eRLO\\u2028" in as_json.output
    assert "[red]markup[/red]:smile:del\\u007f" in as_json.output


def test_exec_list_show_and_logs_print_escaped(system, data, task) -> None:
    error = f"boom {ESC} {OSC} \u202e[bold]x[/bold]"
    execution = store_execution(system, task, error=error, log=f"line one {OSC}\nline two\x00\n")
    for args in (["exec", "list", "--wide"], ["exec", "show", execution.id]):
        result = run_cli(data, *args)
        assert result.exit_code == 0, result.output
        assert_escaped(result.output)
        assert "[bold]x[/bold]" in result.output
    logs = run_cli(data, "exec", "logs", execution.id)
    assert logs.exit_code == 0, logs.output
    assert not unsafe_chars(logs.output)
    assert logs.output.splitlines()[-2:] == ["line one \\x1b]0;owned\\x07", "line two\\x00"]


def test_resources_view_prints_record_text_escaped() -> None:
    data = {
        "samples": [
            {
                "host": f"h{ESC}", "pool": "p\u202e[red]x", "cpu_percent": 1, "memory_percent": 1,
                "disk_percent": 1, "load_per_core": 0.1, "pool_cpu_percent": 1,
                "pool_rss_bytes": 2**20, "active": 0, "concurrency": 1,
            }
        ],
        "weights": None, "weights_stale": True, "queues": {f"tdauto.cpu.h{OSC}": 3},
        "reserved": {}, "waiting": [], "lent": {},
        "decisions": [{"at": 0, "tick": 1, "kind": "lend", "host": f"h{OSC}", "detail": ESC}],
        "errors": {"queues": f"ConnectionError: {ESC}"},
    }  # fmt: skip
    out = io.StringIO()
    Console(file=out, width=250).print(render(data))
    text = out.getvalue()
    assert not unsafe_chars(text), text
    assert "h\\x1b[31mred" in text and "p\\u{202e}[red]x" in text and "\\x07" in text


def test_backup_restore_prints_a_nasty_path_escaped(tmp_path: Path, data: Path) -> None:
    source = FileStore(tmp_path / "source")
    source.create_task(make_task("from-backup"), None)
    archive = write_store_backup(tmp_path / f"b{OSC}[red]x", source.snapshot())
    result = run_cli(data, "backup", "restore", str(archive), "--yes")
    assert result.exit_code == 0, result.output
    assert not unsafe_chars(result.output), result.output
    assert "b\\x1b]0;owned\\x07[red]x/database-" in result.output


def test_alerts_print_the_summary_escaped_and_what_notifiers_said_redacted(system, data) -> None:
    record = {
        "at": "2026-12-08T01:00:00Z", "severity": "warning", "rule": "failures",
        "summary": f"task {ESC}{OSC} failed",
        "delivered": {"webhook": "URLError: https://u:k-hook-1@hooks.example/x?token=k-hook-2"},
    }  # fmt: skip
    system.store.append_history("alerts", record, 10)
    result = run_cli(data, "alerts")
    assert result.exit_code == 0, result.output
    assert not unsafe_chars(result.output), result.output
    assert "task \\x1b[31mred\\x1b[0m\\x1b]0;owned\\x07 failed" in result.output
    assert "k-hook-1" not in result.output and "k-hook-2" not in result.output
