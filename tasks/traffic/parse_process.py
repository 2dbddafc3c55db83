"""Parsing a large stretch of the access log in a second process, while this one writes.

Parsing is Python and takes about half of a catch-up's time; writing the batches takes
the other half, mostly in SQLite. On one process the two take turns; here a child
process reads the segments into batches ready to commit (`reader.ready_batches`: parsed,
numbered for the cap, looked ahead) and hands them over a pipe one at a time, so the
next batch is read while this process commits the one before.
The child is a fresh interpreter (`python -m tasks.traffic.parse_process`: never a fork
of a process holding database connections and threads, and never a re-run of the
caller's main script, as multiprocessing's `spawn` would) and costs about half a second
to start, so it is used only for stretches worth it (`worth_a_process`). It reads the
file and nothing else, and stops when the reader stops, fails or is interrupted.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import struct
import subprocess
import sys
import traceback
from collections.abc import Iterator, Sequence
from typing import BinaryIO

from db.problem import Problem

from .batches import Batch
from .logfile import Segment
from .reader import Reading, ready_batches

MIN_BYTES = 32 << 20  # about 50,000 lines: a second or two of parsing
_LENGTH = struct.Struct(">Q")


class ParseProcessDied(Problem, RuntimeError):
    """The parsing process ended without finishing or saying why."""


def worth_a_process(segments: Sequence[Segment]) -> bool:
    """Whether the segments hold enough to read to pay a second process's start, and a
    second core (and an interpreter to start) is there to run it."""
    try:
        to_read = sum(segment.path.stat().st_size - segment.start.offset for segment in segments)
    except OSError:  # a file gone since the plan: reading it here says so, as it always did
        return False
    return to_read >= MIN_BYTES and len(os.sched_getaffinity(0)) > 1 and bool(sys.executable)


def batches_from_a_process(segments: Sequence[Segment], reading: Reading) -> Iterator[Batch]:
    """`ready_batches(segments, reading)`, read in a child process; an exception there
    is raised here."""
    ours, childs = os.pipe()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    child = subprocess.Popen(
        [sys.executable, "-m", "tasks.traffic.parse_process", str(childs)],
        stdin=subprocess.PIPE, pass_fds=(childs,), env=env,
    )
    os.close(childs)  # the child's end: its exit then shows here as the end of the pipe
    try:
        with os.fdopen(ours, "rb") as frames:
            child.stdin.write(pickle.dumps((segments, reading)))
            child.stdin.close()
            while True:
                frame = _read_frame(frames)
                if frame is None:
                    child.wait(5)
                    raise ParseProcessDied(
                        f"the process reading {segments[0].path} ended unexpectedly (exit code {child.returncode})"
                    )
                kind, value = pickle.loads(frame)
                if kind == "error":
                    raise value
                if kind == "done":
                    return
                yield value
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()


def _read_frame(frames: BinaryIO) -> bytes | None:
    head = frames.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        return None
    (length,) = _LENGTH.unpack(head)
    body = frames.read(length)
    return body if len(body) == length else None


def _write_frame(out: BinaryIO, message: tuple) -> None:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(_LENGTH.pack(len(body)))
    out.write(body)
    out.flush()


def _read_into(out: BinaryIO, segments: Sequence[Segment], reading: Reading) -> None:
    try:
        for batch in ready_batches(segments, reading):
            _write_frame(out, ("batch", batch))
        _write_frame(out, ("done", None))
    except BrokenPipeError:
        return  # the reader stopped
    except Exception as exc:  # noqa: BLE001 - told to the reader, which raises it
        exc.add_note("in the reading process:\n" + "".join(traceback.format_tb(exc.__traceback__)))
        _write_frame(out, ("error", _picklable(exc)))


def _picklable(exc: BaseException) -> BaseException:
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:  # noqa: BLE001 - some exceptions cannot cross: say what it was
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


if __name__ == "__main__":  # the child: its arguments on stdin, batches to the fd named
    arguments = pickle.loads(sys.stdin.buffer.read())
    # Ctrl-C reaches the whole process group: the reader reports it, not this process
    with os.fdopen(int(sys.argv[1]), "wb") as output, contextlib.suppress(KeyboardInterrupt):
        _read_into(output, *arguments)
