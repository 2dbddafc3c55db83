"""A mergeable latency histogram with fixed log-scale bins.

Bin 0 holds latencies below 1 ms; bin k >= 1 holds [2^((k-1)/4), 2^(k/4)) ms, so each
bin is 2^(1/4) (about 19 %) wide. A percentile is reported as the geometric middle of
the bin that holds it, which is within `RELATIVE_ERROR` (2^(1/8) - 1, about 9.1 %) of the
exact value. Histograms are stored as a JSON object {"bin": count} and merge by adding
counts, so any bucket or range of buckets gives p50/p95/p99.
"""

from __future__ import annotations

import json
import math
import re
from bisect import bisect_right
from collections.abc import Iterable, Mapping

STEPS_PER_DOUBLING = 4
MAX_BIN = 127  # 2^31.5 ms, about 35 days: anything longer shares the last bin
RELATIVE_ERROR = 2 ** (1 / (2 * STEPS_PER_DOUBLING)) - 1

SPLICE_MAX_BINS = 16  # beyond this many new bins, decoding both is faster than splicing
_COMPACT = re.compile(r'\{"\d+":\d+(?:,"\d+":\d+)*\}')  # {"12":3,"13":40}
_PAIR = re.compile(r'"(\d+)":(\d+)')
_COUNT = re.compile(r"\d+")
_DECODER = json.JSONDecoder()
_ENCODER = json.JSONEncoder(separators=(",", ":"))  # made once: json.dumps makes one per call

# _EDGES[k - 1] is the lower edge of bin k; exact for whole powers of two.
_EDGES = [2 ** ((k - 1) / STEPS_PER_DOUBLING) for k in range(1, MAX_BIN + 1)]


def bin_of(latency_ms: float | None) -> int | None:
    """The bin of one latency in milliseconds (None for an unknown latency)."""
    if latency_ms is None:
        return None
    if latency_ms < 1:
        return 0
    return min(bisect_right(_EDGES, latency_ms), MAX_BIN)


def bin_bounds(k: int) -> tuple[float, float]:
    """[lower, upper) of bin k, in milliseconds."""
    if k <= 0:
        return 0.0, 1.0
    return _EDGES[k - 1], 2 ** (k / STEPS_PER_DOUBLING)


def estimate(k: int) -> float:
    """The value reported for a percentile that falls in bin k."""
    if k <= 0:
        return 0.0
    return 2 ** ((k - 1) / STEPS_PER_DOUBLING + 1 / (2 * STEPS_PER_DOUBLING))


def merge(into: dict[int, int], other: Mapping[int, int]) -> dict[int, int]:
    for k, n in other.items():
        into[k] = into.get(k, 0) + n
    return into


def encode(hist: Mapping[int, int]) -> str | None:
    """`{"12":3,"13":40}`: compact JSON, bins in order."""
    if not hist:
        return None
    return "{" + ",".join(f'"{k}":{hist[k]}' for k in sorted(hist)) + "}"


def add_encoded(stored: str | None, new: str | None) -> str | None:
    """Two stored histograms added, stored again (SQLite's `HIST_ADD` in an upsert). A
    stored value that is not a histogram counts as empty, as in `decode`.

    It runs once per bucket an aggregation run adds to, and most of an incremental run's
    time goes here: a stored value in the compact form written here and by SQLite's
    json_group_object has a few new counts spliced into its text (two to four times
    faster than decoding and encoding it); many new counts, or any other value, are
    decoded."""
    if new is None:
        return stored
    if stored is not None and new.count(",") < SPLICE_MAX_BINS and _COMPACT.fullmatch(stored):
        return _splice(stored, new)
    try:
        total = _DECODER.decode(stored)
    except (TypeError, ValueError, RecursionError):  # RecursionError: nested deeper than Python's stack
        return new
    if not isinstance(total, dict) or not _histogram_like(total):
        return new
    for k, n in _DECODER.decode(new).items():
        total[k] = total.get(k, 0) + n
    return _ENCODER.encode(total)


def _splice(stored: str, new: str) -> str:
    text = stored
    for k, n in _PAIR.findall(new):
        key = f'"{k}":'  # quoted: "2": cannot match inside "12":
        at = text.find(key)
        if at < 0:
            text = f"{text[:-1]},{key}{n}}}"
        else:
            count = _COUNT.match(text, at + len(key))
            text = f"{text[:count.start()]}{int(count.group()) + int(n)}{text[count.end():]}"
    return text


def _histogram_like(counts: dict) -> bool:
    return bool(counts) and all(k.isdigit() and type(n) is int for k, n in counts.items())


def decode(text: str | None) -> dict[int, int]:
    """The histogram in a `latency_hist` value; a value that is not one counts as empty."""
    if not text:
        return {}
    try:
        raw = json.loads(text)
        return {int(k): int(n) for k, n in raw.items()}
    except (ValueError, TypeError, AttributeError, RecursionError):
        return {}


def percentile(hist: Mapping[int, int], q: float) -> float | None:
    """The nearest-rank q-quantile (0 < q <= 1) of the counted latencies, or None."""
    total = sum(hist.values())
    if total <= 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for k in sorted(hist):
        seen += hist[k]
        if seen >= rank:
            return estimate(k)
    return estimate(max(hist))  # pragma: no cover - unreachable: seen ends at total


def merged(hists: Iterable[Mapping[int, int]]) -> dict[int, int]:
    out: dict[int, int] = {}
    for hist in hists:
        merge(out, hist)
    return out
