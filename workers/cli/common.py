"""Helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.engine import Engine

from db.problem import Problem

from ..startup import open_database

T = TypeVar("T")


class Failure(Problem):
    """A command failed in a way the user can act on; the message is the one line shown."""


def add_command(commands, name: str, help: str, description: str, example: str) -> argparse.ArgumentParser:
    return commands.add_parser(
        name,
        help=help,
        description=description,
        epilog="example:\n  " + example.replace("\n", "\n  "),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, default=str, sort_keys=True)
    sys.stdout.write("\n")


def format_time(ts: float | None) -> str:
    if not ts:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = float(seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"


def print_table(headers: list[str], rows: list[list[Any]]) -> None:
    cells = [[str("-" if v is None else v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def with_database(settings, use: Callable[[Engine], T]) -> T:
    """`use` the existing database (a command never creates one), then let it go."""
    engine = open_database(settings, create=False)
    try:
        return use(engine)
    finally:
        engine.dispose()
