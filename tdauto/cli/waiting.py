"""``task run``'s run id and ``--wait``: the id is printed as soon as the run exists, and a
wait that ends early (``--timeout``, Ctrl-C) says which run goes on and how to follow it, so
no run is left without a name the operator can type (issue #19, part 3)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, NoReturn

from tdauto.cli import base
from tdauto.cli_print import safe

if TYPE_CHECKING:
    from tdauto.api import AutomationSystems
    from tdauto.models import Execution

POLL_S = 0.3


def follow_hint(execution_id: str) -> str:
    return f"follow it with: tdauto exec logs {execution_id} --follow"


def say_started(execution: Execution, to_stderr: bool) -> None:
    """``started <id>`` at once (on stderr under ``--json``, whose stdout is the record)."""
    out = base.err_console if to_stderr else base.console
    out.print(f"started {safe(execution.id)}", soft_wrap=True)
    out.file.flush()


def wait_for(
    system: AutomationSystems, execution: Execution, timeout: float | None, as_json: bool
) -> Execution:
    """``started <id>``, then the run once it ends, with a status line meanwhile; a timeout
    exits 1 and Ctrl-C (from the moment the id is out) 130, each with one line naming the
    run, which goes on."""
    from tdauto.errors import ExecutionTimeout

    hinted: list[str | None] = [None]  # why it still waits, said once (not at every poll)

    def progress(current: Execution) -> None:
        steps = ", ".join(f"{r.type}:{r.status.value}" for r in current.actions)
        status.update(f"{current.status.value}  {safe(f'[{steps}]')}")
        hint = None if current.status.terminal else system.waiting_hint(current)
        if hint is not None and hint != hinted[0]:
            base.warn([hint])
        hinted[0] = hint

    run_id = safe(execution.id)
    try:
        say_started(execution, to_stderr=as_json)
        with base.console.status("waiting…") as status:
            return system.wait_sync(execution.id, timeout, POLL_S, progress)
    except ExecutionTimeout:
        state = system.get_execution_sync(execution.id).status.value
        why = f": {safe(hinted[0])}" if hinted[0] else ""
        said = f"run {run_id} is still {state} after {timeout}s{why}; {follow_hint(run_id)}"
        _stop(f"[red]error:[/red] {said}", 1)
    except KeyboardInterrupt:
        _stop(f"stopped waiting; run {run_id} goes on: {follow_hint(run_id)}", 130)


def _stop(text: str, code: int) -> NoReturn:
    base.err_console.print(text, soft_wrap=True)
    sys.exit(code)
