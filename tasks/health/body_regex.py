"""`health_check_body_regex`: compiled with RE2, searched off the probing loop.

RE2 runs in time linear in the body, so no pattern can backtrack for ever (Python's `re`
took seconds on `(a+)+$` against 28 bytes, and never finished on 64 KiB, holding the
loop that probes every route). Linear still has a factor, the size of the compiled
program: that is capped (`MAX_PROGRAM`), and the search runs in a thread of its own (the
binding releases the GIL), so no regex delays another route's check.

RE2's syntax is the one Caddy (Go's regexp) uses for this same column, and it agrees with
the dashboard's JavaScript where Python's `re` does not: `$` is the end of the text (not
before a final newline), `\\d`, `\\w`, `\\b` are ASCII. What RE2 lacks (look-around,
backreferences, atomic groups, possessive repeats) is a `config:` error saying so.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import re2

from db.problem import Problem

MAX_LENGTH = 1000  # characters of pattern
# RE2 instructions. A pattern whose DFA would be too large (exponential, or past RE2's
# memory) is searched by RE2's NFA, at a cost of up to instructions x bytes: at 1,000 the
# worst found, [ab]*a[ab]{990}c, takes ~2 s on 64 KiB (in its thread, past the route's
# timeout if need be); (?:a?){800}a{800}c (2,405) took 3.6 s, \w{200} x 10 (6,005) 3.8 s.
MAX_PROGRAM = 1000
SHOWN = 60  # characters of the pattern quoted in an error

# Searches of ordinary patterns take microseconds; 16 threads let as many costly ones run
# at once before another route's search has to wait for a thread.
_executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix="proxyos-health-regex")

# RE2's message (its start) -> what the user wrote that RE2 does not support.
_UNSUPPORTED = (
    ("invalid perl operator: (?=", "lookahead (?=...) is not supported"),
    ("invalid perl operator: (?!", "lookahead (?!...) is not supported"),
    ("invalid perl operator: (?<=", "lookbehind (?<=...) is not supported"),
    ("invalid perl operator: (?<!", "lookbehind (?<!...) is not supported"),
    ("invalid perl operator: (?>", "atomic groups (?>...) are not supported"),
    ("invalid escape sequence: \\k", "backreferences \\k<name> are not supported"),
    ("invalid escape sequence: \\Z", "\\Z is not supported: use \\z for the end of the text"),
    ("invalid escape sequence: \\u", "\\uXXXX is not supported: write \\x{XXXX}"),
    ("invalid repetition size", "repetition counts above 1000 are not supported"),
)


class RegexProblem(Problem, ValueError):
    """Why a pattern cannot be used; the message completes 'health_check_body_regex ...'."""


def _options() -> re2.Options:
    options = re2.Options()
    options.never_capture = True  # a yes/no answer: RE2 can then use its fastest engine
    options.log_errors = False  # RE2 would print the pattern to stderr
    return options


_OPTIONS = _options()


def shown(pattern: str) -> str:
    return repr(pattern if len(pattern) <= SHOWN else pattern[: SHOWN - 3] + "...")


def _explain(pattern: str, message: str) -> str:
    if "(?P=" in pattern and message.startswith("invalid perl operator: (?P"):
        return f"{shown(pattern)} uses syntax RE2 does not support: backreferences (?P=name) are not supported"
    if message.startswith("invalid escape sequence: \\") and message[-1:].isdigit():
        return f"{shown(pattern)} uses syntax RE2 does not support: backreferences \\1-\\9 are not supported"
    if message.startswith("bad repetition operator: ") and message.endswith("+"):
        return (
            f"{shown(pattern)} uses syntax RE2 does not support: possessive repeats "
            f"({message.rpartition(': ')[2]}) are not supported"
        )
    for start, meaning in _UNSUPPORTED:
        if message.startswith(start):
            return f"{shown(pattern)} uses syntax RE2 does not support: {meaning}"
    return f"{shown(pattern)} is not a valid regular expression for RE2 ({message})"


class BodyRegex:
    """A compiled body regex; `matches` is awaited on the probing loop."""

    def __init__(self, pattern: str) -> None:
        if len(pattern) > MAX_LENGTH:
            raise RegexProblem(
                f"{shown(pattern)} is {len(pattern)} characters long: at most {MAX_LENGTH} characters are accepted"
            )
        try:
            self._regex: Any = re2.compile(pattern, _OPTIONS)
        except re2.error as exc:
            message = exc.args[0] if exc.args else ""
            if isinstance(message, bytes):
                message = message.decode("utf-8", "replace")
            raise RegexProblem(_explain(pattern, str(message))) from None
        size = self._regex.programsize
        if size > MAX_PROGRAM:
            raise RegexProblem(
                f"{shown(pattern)} is too large for RE2 to search quickly "
                f"({size} instructions, at most {MAX_PROGRAM}; a repeat {{n}} counts n times)"
            )
        self.pattern = pattern

    def search(self, body: bytes) -> bool:
        """Whether the pattern occurs in `body` read as UTF-8 (invalid bytes as U+FFFD)."""
        text = body.decode("utf-8", "replace").encode("utf-8")
        return self._regex.search(text) is not None

    async def matches(self, body: bytes) -> bool:
        """`search`, in a thread: the probing loop goes on meanwhile."""
        return await asyncio.get_running_loop().run_in_executor(_executor, self.search, body)
