"""A shell action that prints ``seq 1 N`` (14,000,000: 114.9 MB) on tdauto's own pools
(``AutomationSystems.start()``, local mode): time from trigger to end, the size of the
execution log and of each worker log, and whether a worker log copied the command's output.

    .venv/bin/python benchmarks/output_flood.py [N]
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

from tdauto import AutomationSystems


def main(last: int) -> None:
    data = Path(tempfile.mkdtemp()) / "data"
    system = AutomationSystems(data_dir=data, shell_allow=["seq"])
    system.start()
    try:
        argv = ["seq", "1", str(last)]
        task = asyncio.run(
            system.create_task(
                "flood", "maintenance", "daily", {"hour": 2},
                [{"type": "shell", "params": {"argv": argv}}],
            )
        )  # fmt: skip
        time.sleep(8)  # the pools come up
        started = time.monotonic()
        ex = system.wait_sync(system.trigger_sync(task.id).id, timeout=600)
        took = time.monotonic() - started
    finally:
        system.stop()
    logs = data / "logs"
    workers = {p.name: p.stat().st_size for p in sorted((logs / "processes").glob("*.log"))}
    copied = any(f"seq: {last - 1}" in (logs / "processes" / n).read_text() for n in workers)
    print(f"{ex.status.value} in {took:.2f}s from trigger to end")
    print(f"execution log {(logs / f'{ex.id}.log').stat().st_size} bytes; worker logs {workers}")
    print(f"a worker log copied the output: {copied}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 14_000_000)
