"""Files the agent must find whole after a crash.

``write_atomically`` is the one way the agent replaces a file whose old or new content
must survive a ``kill -9`` or a power cut (the applied content manifest, the till's
signed books and the price book held for its effective time): never a torn mix.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_atomically(path: Path, data: bytes) -> None:
    """``path`` holds the old bytes or ``data``, whatever happens (temp, fsync, rename,
    then fsync of the directory so the rename itself survives a power cut).

    Blocking (fsync): call it from a worker thread (``asyncio.to_thread``)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
