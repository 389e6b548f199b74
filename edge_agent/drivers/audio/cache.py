"""The audio driver's local store: assets content-addressed by sha256, and the last
accepted schedule, so that playback continues offline and across agent restarts.

Writes go to a temporary file and are renamed into place (atomic on POSIX), so a
crash never leaves a half-written asset or schedule behind. Reads of assets verify the
hash: a corrupted file is treated as missing, never played.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

_SHA = re.compile(r"^[0-9a-f]{64}$")
SCHEDULE_FILE = "schedule.json"


class AssetCache:
    def __init__(self, root: Path, *, max_bytes: int = 2 * 1024**3) -> None:
        self.root = root
        self.assets = root / "sha256"
        self.assets.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes  # 2 GiB: a year of in-store audio at 128 kbit/s is less

    def _write(self, path: Path, data: bytes) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def path(self, sha256: str) -> Path:
        if not _SHA.match(sha256):
            raise ValueError(f"not a sha256: {sha256!r}")
        return self.assets / sha256

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        path = self.path(digest)
        if not path.exists():
            if self.size() + len(data) > self.max_bytes:
                raise OSError(f"asset cache full ({self.max_bytes} bytes)")
            self._write(path, data)
        return digest

    def has(self, sha256: str) -> bool:
        """Present and intact (re-hashed: a flipped bit must not reach a speaker)."""
        try:
            data = self.path(sha256).read_bytes()
        except (OSError, ValueError):
            return False
        return hashlib.sha256(data).hexdigest() == sha256

    def read(self, sha256: str) -> bytes:
        """The asset's bytes; OSError when it is missing or does not match its hash."""
        data = self.path(sha256).read_bytes()
        if hashlib.sha256(data).hexdigest() != sha256:
            raise OSError(f"asset {sha256[:12]} is corrupt")
        return data

    def size(self) -> int:
        return sum(p.stat().st_size for p in self.assets.iterdir() if p.is_file())

    def save_schedule(self, document: bytes) -> None:
        self._write(self.root / SCHEDULE_FILE, document)

    def load_schedule(self) -> bytes | None:
        try:
            return (self.root / SCHEDULE_FILE).read_bytes()
        except FileNotFoundError:
            return None
