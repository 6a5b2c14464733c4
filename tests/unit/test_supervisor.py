"""The supervisor of ``tdauto up`` and ``start()``: restarts with backoff, gives up on a crash
loop, stops whole process groups; the data dir's lock; output to a broken pipe."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tdauto.console import PipeSafe
from tdauto.processes import PARENT_ENV
from tdauto.supervisor import CrashLoop, RestartPolicy, Supervisor, describe
from tdauto.up import _Stop
from tdauto.uplock import AlreadyRunning, UpLock, holder


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sleeper() -> subprocess.Popen[bytes]:
    """A child in its own session that also has a child of its own (as a worker's pool)."""
    return subprocess.Popen(["sh", "-c", "sleep 600 & exec sleep 600"], start_new_session=True)


def kill(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.wait()


@pytest.fixture
def supervised() -> Iterator[tuple[Supervisor, Clock, list[str]]]:
    clock, said = Clock(), []
    sup = Supervisor({"cpu": sleeper, "memory": sleeper}, say=said.append, clock=clock)
    sup.start()
    yield sup, clock, said
    sup.stop(grace_s=2)


def test_an_exited_pool_is_restarted_after_a_growing_backoff(supervised) -> None:
    sup, clock, said = supervised
    delays = []
    for _ in range(4):
        first = sup.process("cpu")
        assert first is not None
        time.sleep(0.1)
        [left_behind] = psutil.Process(first.pid).children()
        kill(first)
        sup.check()
        _gone, alive = psutil.wait_procs([left_behind], timeout=5)
        assert alive == []  # the rest of its group went with it
        assert f"pool cpu exited unexpectedly (signal SIGKILL, pid {first.pid})" in said[-1]
        delays.append(float(said[-1].rsplit("restarting in ", 1)[1].rstrip("s")))
        clock.now += delays[-1] - 0.1
        sup.check()  # not due yet: nothing started
        assert sup.process("cpu") is None
        clock.now += 0.1
        sup.check()
        assert "pool cpu restarted" in said[-1]
        again = sup.process("cpu")
        assert again is not None and again.poll() is None and again.pid != first.pid
        clock.now += 10  # four exits stay within the crash window
    assert delays == [1, 2, 4, 8]
    assert sup.restarts() == {"cpu": 4, "memory": 0}


def test_the_backoff_is_capped_and_reset_after_a_healthy_minute() -> None:
    policy = RestartPolicy()
    assert [policy.delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    clock, said = Clock(), []
    sup = Supervisor({"cpu": sleeper}, say=said.append, clock=clock)
    sup.start()
    try:
        for _ in range(2):
            kill(sup.process("cpu"))  # type: ignore[arg-type]
            sup.check()
            clock.now += 30
            sup.check()
        assert said[-2].endswith("restarting in 2s")
        clock.now += 61  # healthy for a minute: the next exit starts over at 1 s
        sup.check()
        kill(sup.process("cpu"))  # type: ignore[arg-type]
        sup.check()
        assert said[-1].endswith("restarting in 1s")
    finally:
        sup.stop(grace_s=2)


def test_five_exits_in_a_minute_stop_the_restarts(supervised) -> None:
    sup, clock, _ = supervised
    for _ in range(4):
        kill(sup.process("cpu"))  # type: ignore[arg-type]
        sup.check()
        clock.now += 9
        sup.check()
    kill(sup.process("cpu"))  # type: ignore[arg-type]
    loop = r"pool cpu exited 5 times within 60s \(last signal SIGKILL"
    with pytest.raises(CrashLoop, match=loop):
        sup.check()
    clock.now += 60
    sup.check()  # given up: not started again, and the other pool still runs
    assert sup.process("cpu") is None
    assert sup.process("memory").poll() is None  # type: ignore[union-attr]


def test_exits_spread_over_more_than_a_minute_are_not_a_crash_loop(supervised) -> None:
    sup, clock, _ = supervised
    for _ in range(8):
        kill(sup.process("cpu"))  # type: ignore[arg-type]
        sup.check()
        clock.now += 31
        sup.check()
    assert sup.restarts() == {"cpu": 8, "memory": 0}


def deaf_child() -> subprocess.Popen[bytes]:
    """A leader that SIGTERM stops, with a child that ignores SIGTERM and outlives it."""
    return subprocess.Popen(
        ["sh", "-c", "(trap '' TERM; exec sleep 600) & exec sleep 600"], start_new_session=True
    )


def test_stop_ends_every_process_of_every_group() -> None:
    sup = Supervisor({"cpu": sleeper, "memory": deaf_child})
    sup.start()
    time.sleep(0.2)
    tree = [psutil.Process(p.pid) for p in sup.processes]
    tree += [c for p in list(tree) for c in p.children(recursive=True)]
    assert len(tree) == 4
    sup.stop(grace_s=5)
    _gone, alive = psutil.wait_procs(tree, timeout=5)
    assert alive == []


def stubborn() -> subprocess.Popen[bytes]:
    """A process that ignores SIGTERM and says when it does."""
    code = (
        "import signal, time; signal.signal(15, signal.SIG_IGN); "
        "print(1, flush=True); time.sleep(600)"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code], start_new_session=True, stdout=subprocess.PIPE
    )


def test_a_second_signal_skips_the_grace_period() -> None:
    sup = Supervisor({"cpu": stubborn})
    sup.start()
    assert sup.processes[0].stdout.readline() == b"1\n"  # type: ignore[union-attr]
    hurry = threading.Event()
    threading.Timer(0.5, hurry.set).start()
    started = time.monotonic()
    sup.stop(grace_s=60, hurry=hurry.is_set)
    assert time.monotonic() - started < 30  # not the 60 s grace
    assert sup.processes == []


def test_a_pool_that_cannot_be_started_counts_as_an_exit() -> None:
    clock, said, forks = Clock(), [], []

    def failing() -> subprocess.Popen[bytes]:
        forks.append(1)
        if len(forks) < 3:
            raise BlockingIOError(11, "Resource temporarily unavailable")
        return sleeper()

    sup = Supervisor({"cpu": failing}, say=said.append, clock=clock)
    try:
        sup.start()
        assert said == [
            "pool cpu could not be started (Resource temporarily unavailable); restarting in 1s"
        ]
        clock.now += 1
        sup.check()
        assert said[-1].endswith("restarting in 2s") and sup.restarts() == {"cpu": 0}
        clock.now += 2
        sup.check()
        assert sup.process("cpu") is not None and sup.restarts() == {"cpu": 1}
    finally:
        sup.stop(grace_s=2)


def test_a_second_signal_or_one_during_a_stop_hurries() -> None:
    stop = _Stop()
    stop(signal.SIGINT, None)
    assert stop.requested and not stop.hurry
    stop(signal.SIGINT, None)
    assert stop.hurry
    crashed = _Stop()
    crashed.stopping = True  # a crash loop started the stop: the first Ctrl-C hurries it
    crashed(signal.SIGINT, None)
    assert crashed.hurry


def test_a_stop_signal_ignored_from_the_start_stays_ignored() -> None:
    """``nohup tdauto up`` must survive the terminal's hangup."""
    code = (
        "import signal; from tdauto.up import _Stop; _Stop().install(); "
        "print(signal.getsignal(signal.SIGHUP) is signal.SIG_IGN, "
        "signal.getsignal(signal.SIGTERM) is signal.SIG_IGN)"
    )
    out = subprocess.run(
        ["nohup", sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["True", "False"]


FOLLOW = """
import os, sys, time
from tdauto.processes import follow_parent
follow_parent(interval_s=0.1, grace_s=float(sys.argv[1]))
print("following", flush=True)
time.sleep(60)
"""


def test_a_pool_stops_when_the_process_that_started_it_is_gone() -> None:
    # started by a parent that is still there: it runs on
    env = {**os.environ, PARENT_ENV: str(os.getpid())}
    alive = subprocess.Popen([sys.executable, "-c", FOLLOW, "5"], env=env, stdout=subprocess.PIPE)
    assert alive.stdout is not None and alive.stdout.readline() == b"following\n"
    time.sleep(0.5)
    assert alive.poll() is None
    kill(alive)
    # started by a parent that died before the pool got going: it stops at once (SIGTERM)
    env = {**os.environ, PARENT_ENV: "999999999"}
    orphan = subprocess.run([sys.executable, "-c", FOLLOW, "5"], env=env, timeout=30)
    assert orphan.returncode == -signal.SIGTERM
    # a SIGTERM it ignores is followed by SIGKILL to its group after the grace period
    deaf = FOLLOW.replace(
        "import os, sys, time",
        "import os, sys, time, signal; signal.signal(signal.SIGTERM, signal.SIG_IGN)",
    )
    stubborn = subprocess.run(
        [sys.executable, "-c", deaf, "0.5"], env=env, timeout=30, start_new_session=True
    )
    assert stubborn.returncode == -signal.SIGKILL


def test_exit_codes_read_as_a_person_reads_them() -> None:
    assert describe(-9) == "signal SIGKILL"
    assert describe(1) == "code 1"


# --- the data dir's lock ---------------------------------------------------------------------

HOLD = """
import sys, time
from collections.abc import Iterator
from pathlib import Path
from tdauto.uplock import UpLock
lock = UpLock(Path(sys.argv[1]))
lock.acquire()
lock.record("cpu", int(sys.argv[2]))
print("held", flush=True)
time.sleep(600)
"""


def _hold(data_dir: Path, child_pid: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(data_dir), str(child_pid)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    return proc


def test_a_second_holder_is_refused_with_the_first_ones_pid(tmp_path: Path) -> None:
    orphan = sleeper()
    first = _hold(tmp_path, orphan.pid)
    try:
        assert holder(tmp_path) == first.pid
        with pytest.raises(AlreadyRunning) as refused:
            UpLock(tmp_path).acquire()
        assert str(refused.value) == (
            f"tdauto up is already running for {tmp_path} (pid {first.pid})"
        )
        assert orphan.poll() is None  # a refused acquire touches nothing
    finally:
        first.kill()
        first.wait()
    # The holder was killed: its lock is free, and the pool it left running is stopped
    assert holder(tmp_path) is None
    lock = UpLock(tmp_path)
    assert lock.acquire() == [orphan.pid]
    assert orphan.wait(timeout=5) == -signal.SIGKILL
    assert holder(tmp_path) == os.getpid()
    lock.release()
    assert holder(tmp_path) is None


def test_a_reused_pid_is_not_taken_for_an_orphan(tmp_path: Path) -> None:
    bystander = sleeper()
    try:
        (tmp_path / "state").mkdir()
        (tmp_path / "state" / "up.lock").write_text(
            f'{{"pid": 1, "pools": {{"cpu": {{"pid": {bystander.pid}, "created": 1.0}}}}}}'
        )
        lock = UpLock(tmp_path)
        assert lock.acquire() == []
        lock.release()
        assert bystander.poll() is None
    finally:
        kill(bystander)


# --- output to a console that went away -------------------------------------------------------


def test_text_the_console_cannot_encode_is_replaced_not_taken_for_a_broken_pipe() -> None:
    read, write = os.pipe()
    stream = os.fdopen(write, "w", encoding="latin-1")
    safe = PipeSafe(stream)
    assert safe.encoding == "latin-1"
    safe.write("stopping…\n")
    safe.write("stopped.\n")
    stream.close()
    assert not safe.broken
    assert os.read(read, 100) == b"stopping?\nstopped.\n"
    os.close(read)


def test_writes_to_a_broken_pipe_are_dropped_and_the_descriptor_quieted() -> None:
    read, write = os.pipe()
    stream = os.fdopen(write, "w")
    os.close(read)  # the reader (tee) is gone
    safe = PipeSafe(stream)
    assert safe.write("stopping…\n") == len("stopping…\n")
    assert safe.broken
    safe.write("stopped.\n")
    safe.flush()
    stream.write("anything else in the process\n")
    stream.flush()  # the descriptor now points at /dev/null: no EPIPE
    stream.close()
