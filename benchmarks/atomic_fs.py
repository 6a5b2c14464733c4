"""The other candidate for the local broker, kept as the measurement's prototype only: kombu's
filesystem channel made atomic (docs/architecture.md, "The local broker").

A message is written under a temporary name outside the queue folder, fsynced, then renamed
into place; a consumer claims it by renaming it into ``claimed/`` (only one rename wins), reads
it and deletes it. Wake-ups are tdauto's (``tdauto.localbroker``'s socket), so the comparison
is of storage alone. Acks are not tracked (the claim deletes), which only flatters it.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from queue import Empty
from time import monotonic
from typing import Any

from kombu.transport import filesystem
from kombu.utils.json import dumps, loads

from tdauto import localbroker


class Channel(filesystem.Channel):
    connection: Any

    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        name = f"{int(monotonic() * 1000):015d}_{uuid.uuid4()}.{queue}.msg"
        tmp = Path(self.data_folder_out).parent / "tmp" / name
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, dumps(payload).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, Path(self.data_folder_out) / name)
        self.connection.waker.wake_all()

    def _get(self, queue: str, timeout: float | None = None) -> Any:
        suffix = f".{queue}.msg"
        folder = Path(self.data_folder_in)
        claimed = folder.parent / "claimed"
        for name in sorted(n for n in os.listdir(folder) if n.endswith(suffix)):
            try:
                os.rename(folder / name, claimed / name)
            except FileNotFoundError:
                continue  # another consumer won it
            data = (claimed / name).read_bytes()
            os.unlink(claimed / name)
            return loads(data)
        raise Empty()


class Transport(localbroker.Transport):
    Channel = Channel
    implements = filesystem.Transport.implements
    global_state = filesystem.Transport.global_state

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self.state = self.global_state
        root = Path(client.transport_options["data_folder_in"]).parent
        for sub in ("queue", "tmp", "claimed", "control"):
            (root / sub).mkdir(parents=True, exist_ok=True)

    def _sweep(self) -> None:
        """No database here: nothing to sweep."""
