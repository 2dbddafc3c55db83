"""Real servers on free loopback ports for the tests, one module a server; each has a
`start_<server>(...)` that returns when the server answers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, TypeVar


class _Stoppable(Protocol):
    def stop(self) -> None: ...


S = TypeVar("S", bound=_Stoppable)


def serving(server: S) -> Iterator[S]:
    """For a fixture: `yield from serving(start_x(...))` hands the test the server, and
    stops it afterwards."""
    try:
        yield server
    finally:
        server.stop()
