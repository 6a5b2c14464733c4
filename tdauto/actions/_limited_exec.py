"""Trampoline that puts a command under rlimits, then becomes it (``exec``).

Run as ``python -I -S _limited_exec.py <address_space_bytes> -- <program> [args...]`` by
``tdauto.actions.limits``. Limits are set here, in a process of their own, rather than in a
``preexec_fn``, which is not safe in the worker's threaded processes. Only the standard
library is imported (``-S``: no site), so it starts in a few milliseconds.
"""

import os
import resource
import sys


def main(argv: list[str]) -> None:
    sep = argv.index("--")
    address_space = int(argv[0]) if sep > 0 else 0
    command = argv[sep + 1 :]
    if address_space > 0:
        _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            address_space = min(address_space, hard)
        # hard = soft: the command cannot lift the limit itself
        resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        sys.stderr.write(f"tdauto: cannot run {command[0]}: {exc.strerror}\n")
        os._exit(127)


if __name__ == "__main__":
    main(sys.argv[1:])
