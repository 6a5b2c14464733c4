"""Usage limits of an action's subprocesses, derived from the action's reservation.

A task's ``resources`` say what share of a host each of its actions may use; admission
makes sure the shares on a host add up to at most 100. Limits make a command keep to its
share where the kernel can enforce it:

- **Memory**: ``RLIMIT_AS`` (address space) = the memory share of the host's RAM (the
  cgroup's limit when the worker runs in a container with a lower one), at least
  ``MIN_ADDRESS_SPACE``. A command that tries to map more gets ``ENOMEM`` (``MemoryError`` in
  Python, ``malloc`` returning NULL in C) instead of pushing the host into swap or the OOM
  killer. A share of 0 means the task claimed no memory, not "none at all": no limit.
  Address space counts reservations that are never touched (thread stacks, allocator arenas,
  JIT heaps), so give programs that reserve much more than they use (the JVM, Go binaries)
  a larger share, or turn limits off with ``TDAUTO_SUBPROCESS_LIMITS=false``.
- **CPU: no rlimit.** The cpu share is a rate (a fraction of the host's cores while the
  action runs) and ``RLIMIT_CPU`` caps total CPU seconds per process; the only cap it could
  express is "share x cores x timeout", which kills a command that bursts early even though
  its average stays within its share, and does nothing without a timeout. The rate is kept by
  admission (shares never exceed 100 on a host) and wall time by the action's timeout.
- **Storage: no rlimit.** ``RLIMIT_FSIZE`` caps one file's size, not a share of a disk's
  I/O or space; the storage share is kept by admission.

Limits apply to commands started with ``ctx.run`` (``run_command``); they are set by a small
trampoline (``_limited_exec.py``) that then ``exec``s the command, so every process the
command starts inherits them.
"""

from __future__ import annotations

import errno
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import psutil

MIN_ADDRESS_SPACE = 256 * 2**20
TRAMPOLINE = Path(__file__).with_name("_limited_exec.py")
_CGROUP_MEMORY_MAX = Path("/sys/fs/cgroup/memory.max")


@dataclass(frozen=True)
class Limits:
    """The rlimits one command runs under; ``None`` = not limited."""

    address_space_bytes: int | None = None

    @property
    def empty(self) -> bool:
        return self.address_space_bytes is None

    def wrap(
        self, argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> list[str]:
        """``argv`` started through the trampoline that sets these limits. A program that
        cannot be found raises ``FileNotFoundError`` here, as ``Popen`` would without limits."""
        if self.empty:
            return argv
        program = argv[0]
        if os.sep in program:
            path = Path(cwd or ".") / program
            if not os.access(path, os.X_OK):
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)
        elif shutil.which(program, path=(env or os.environ).get("PATH", os.defpath)) is None:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)
        limit = str(self.address_space_bytes or 0)
        return [sys.executable, "-I", "-S", str(TRAMPOLINE), limit, "--", *argv]


def host_memory_bytes() -> int:
    """The RAM this host gives its workers: physical memory, or the cgroup (v2) limit when
    that is lower."""
    total = int(psutil.virtual_memory().total)
    try:
        text = _CGROUP_MEMORY_MAX.read_text().strip()
    except OSError:
        return total
    return min(total, int(text)) if text.isdigit() else total


def limits_for(memory_percent: float, total_bytes: int | None = None) -> Limits:
    """The limits of a command of an action that reserves ``memory_percent`` of a host."""
    if memory_percent <= 0:
        return Limits()
    total = host_memory_bytes() if total_bytes is None else total_bytes
    share = int(total * min(memory_percent, 100.0) / 100.0)
    return Limits(address_space_bytes=max(share, MIN_ADDRESS_SPACE))
