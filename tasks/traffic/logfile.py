"""Reading a log file that rotates: which files to read, from where, in what order.

The committed position names the file being read by identity (device, inode) and a
fingerprint of its first bytes, plus the offset just after the last consumed newline.
At the start of a run that position is compared with the file now at the configured path:

- same file, not shorter, same first bytes: carry on from the offset;
- a different file (rotated by rename): finish the old file, found by its identity in
  the same directory, then read the new file from the start;
- the same file but shorter or with different first bytes (copy-truncate): finish the
  copy, found in the same directory by its first bytes, then read the file from the start.

A file that is still being written ends with a partial line: it is left for the next
run. A rotated file is complete: a last line without a newline is read as a line.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from db.problem import Problem

FINGERPRINT_BYTES = 1024
CHUNK_BYTES = 1 << 20
MAX_LINE_BYTES = 4 << 20  # Caddy's request headers alone may take 1 MB


class NotARegularFile(Problem):
    """The log path names a FIFO, a device or a directory: reading it could block or
    never end."""


@dataclass(frozen=True)
class Position:
    device: int | None = None
    inode: int | None = None
    offset: int = 0
    fingerprint: str | None = None
    fingerprint_len: int = 0

    def same_file(self, st: os.stat_result) -> bool:
        return self.inode == st.st_ino and self.device == st.st_dev


@dataclass(frozen=True)
class Segment:
    path: Path
    start: Position  # identity of the file and where to start reading it
    complete: bool  # rotated away: nothing more will be written to it


@dataclass(frozen=True)
class Plan:
    segments: list[Segment]
    lost: str | None = None  # why lines may have been lost (rotated file gone)


def fingerprint(path: Path, length: int) -> str | None:
    try:
        with path.open("rb") as fh:
            head = fh.read(length)
    except OSError:
        return None
    if len(head) < length:
        return None
    return hashlib.sha256(head).hexdigest()


def _siblings(path: Path) -> Iterator[Path]:
    stem = path.name.split(".", 1)[0]
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return
    for entry in sorted(entries):
        if entry != path and entry.name.startswith(stem) and entry.is_file():
            yield entry


def _find_by_identity(path: Path, pos: Position) -> Path | None:
    for entry in _siblings(path):
        try:
            if pos.same_file(entry.stat()):
                return entry
        except OSError:
            continue
    return None


def _find_by_fingerprint(path: Path, pos: Position, exclude: os.stat_result | None) -> Path | None:
    if not pos.fingerprint_len:
        return None
    for entry in _siblings(path):
        try:
            st = entry.stat()
        except OSError:
            continue
        if exclude is not None and st.st_ino == exclude.st_ino and st.st_dev == exclude.st_dev:
            continue
        if st.st_size >= pos.offset and fingerprint(entry, pos.fingerprint_len) == pos.fingerprint:
            return entry
    return None


def _identity(path: Path, st: os.stat_result, offset: int = 0) -> Position:
    return Position(device=st.st_dev, inode=st.st_ino, offset=offset)


def plan(path: Path, pos: Position) -> Plan:
    """The files to read, in order, to continue from `pos`."""
    try:
        current = path.stat()
    except FileNotFoundError:
        current = None
    if current is not None and not stat.S_ISREG(current.st_mode):
        raise NotARegularFile(f"{path} is not a regular file (a FIFO, device or directory); "
                              "point PROXYOS_ACCESS_LOG at the file Caddy writes its access log to")
    segments: list[Segment] = []
    lost = None
    if pos.inode is None:  # first run
        if current is not None:
            segments.append(Segment(path, _identity(path, current), complete=False))
        return Plan(segments)

    if current is not None and pos.same_file(current):
        unchanged = current.st_size >= pos.offset and (
            not pos.fingerprint_len or fingerprint(path, pos.fingerprint_len) == pos.fingerprint
        )
        if unchanged:
            return Plan([Segment(path, pos, complete=False)])
        copy = _find_by_fingerprint(path, pos, exclude=current)
        if copy is not None:
            st = copy.stat()
            segments.append(Segment(copy, replace(pos, device=st.st_dev, inode=st.st_ino), True))
        elif pos.offset:
            lost = f"{path} was truncated or replaced, and no copy of its unread end was found"
        segments.append(Segment(path, _identity(path, current), complete=False))
        return Plan(segments, lost)

    old = _find_by_identity(path, pos) or _find_by_fingerprint(path, pos, exclude=current)
    if old is not None:
        st = old.stat()
        segments.append(Segment(old, replace(pos, device=st.st_dev, inode=st.st_ino), True))
    else:
        lost = f"the file read before ({path}, inode {pos.inode}) is gone"
    if current is not None:
        segments.append(Segment(path, _identity(path, current), complete=False))
    return Plan(segments, lost)


def read_lines(segment: Segment, max_line: int = MAX_LINE_BYTES) -> Iterator[tuple[bytes | None, int]]:
    """(line without newline, offset just after it) from the segment's start offset. A
    partial last line is held back unless the file is complete. A line longer than
    `max_line` bytes comes as None, and is not held in memory: its bytes are skipped up
    to its newline (or, when it is the partial last line, up to the end of the file, so
    the next run does not read it again)."""
    with segment.path.open("rb") as fh:
        fh.seek(segment.start.offset)
        offset = segment.start.offset
        rest = b""
        skipping = False  # inside a line longer than max_line
        while True:
            chunk = fh.read(CHUNK_BYTES)
            if not chunk:
                break
            if skipping:
                newline = chunk.find(b"\n")
                if newline < 0:
                    offset += len(chunk)
                    continue
                offset += newline + 1
                chunk, skipping = chunk[newline + 1 :], False
                yield None, offset
            data = rest + chunk if rest else chunk
            lines = data.split(b"\n")
            rest = lines.pop()
            for line in lines:
                offset += len(line) + 1
                yield (line if len(line) <= max_line else None), offset
            if len(rest) > max_line:
                offset += len(rest)
                rest, skipping = b"", True
        if skipping:
            yield None, offset
        elif rest and segment.complete:
            yield rest, offset + len(rest)


def with_fingerprint(path: Path, pos: Position) -> Position:
    """`pos` with a fingerprint of up to FINGERPRINT_BYTES already-read bytes."""
    length = min(FINGERPRINT_BYTES, pos.offset)
    if length <= pos.fingerprint_len:
        return pos
    digest = fingerprint(path, length)
    if digest is None:
        return pos
    return replace(pos, fingerprint=digest, fingerprint_len=length)
