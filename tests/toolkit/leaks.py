"""Looking for secrets where they must not be: each secret in the encodings a careless
writer would use, and the bytes a SQLite queue's files held while a run lasted."""

from __future__ import annotations

import base64
import json
import threading
from pathlib import Path


def needles(*values: str) -> list[bytes]:
    """Each secret as written, and in the encodings a careless writer would use."""
    found = []
    for value in values:
        raw = value.encode()
        found += [raw, base64.b64encode(raw), json.dumps(value).encode()]
    return found


def leaks(blob: bytes, needles: list[bytes]) -> list[str]:
    return [needle.decode()[:12] + "..." for needle in needles if needle in blob]


class FileSnapshots:
    """The queue files' bytes every 20 ms while the run lasts: a message lives in them only
    until a consumer takes it, and SQLite may reuse its page afterwards."""

    def __init__(self, folder: Path, pattern: str) -> None:
        self.folder, self.pattern = folder, pattern
        self.seen: dict[int, bytes] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.wait(0.02):
            for path in self.folder.glob(self.pattern):
                try:
                    data = path.read_bytes()
                except OSError:
                    continue
                self.seen.setdefault(hash(data), data)

    def stop(self) -> bytes:
        self._stop.set()
        self._thread.join(timeout=5)
        return b"".join(self.seen.values())
