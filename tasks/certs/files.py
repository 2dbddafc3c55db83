"""Writing certificate files atomically: a temporary file in the same directory, fsync,
rename. Private keys are created with mode 0600 from the start."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def cert_paths(cert_dir: Path, domain: str) -> tuple[Path, Path]:
    """fullchain.pem and privkey.pem of `domain` (a wildcard's `*` becomes `_`)."""
    folder = cert_dir / domain.replace("*", "_")
    return folder / "fullchain.pem", folder / "privkey.pem"


def write_certificate(
    cert_dir: Path, domain: str, fullchain: bytes, key: bytes
) -> tuple[Path, Path]:
    """Key first, then chain: a reader that sees the new chain also finds its key."""
    chain_path, key_path = cert_paths(cert_dir, domain)
    write_atomic(key_path, key, mode=0o600)
    write_atomic(chain_path, fullchain, mode=0o644)
    return chain_path, key_path
