"""A stand-in for the ProxyOS dashboard writing the same SQLite file: 50 short write
transactions a second, alternating an autocommit `UPDATE routes` and a (deferred)
transaction that inserts an `audit_log` row and touches the route, as better-sqlite3's
`db.transaction()` does; busy_timeout 5 s, like the dashboard's default.

Prints `ready`, writes until its stdin closes, then prints one JSON line:
{"writes", "errors": [messages], "max_wait_ms", "p99_wait_ms", "waits_over_100ms"}
where a write's wait is the time from its first statement to its commit.

usage: python dashboard_writer.py DATABASE_FILE ROUTE_ID [ROUTE_ID ...]
"""

from __future__ import annotations

import json
import sqlite3
import sys
import threading
import time

PERIOD_S = 0.020  # 50 writes a second


def _write(conn: sqlite3.Connection, n: int, route_id: str) -> None:
    now = int(time.time())
    if n % 2:
        conn.execute("UPDATE routes SET updated_at = ?, config_version = config_version + 1 WHERE id = ?",
                     (now, route_id))
        return
    conn.execute("BEGIN")
    try:
        conn.execute(
            "INSERT INTO audit_log (id, action, resource_type, resource_id, actor, detail, created_at)"
            " VALUES (?, 'route.update', 'route', ?, 'user', '{}', ?)",
            (f"dash{n}-{time.time_ns()}", route_id, now),
        )
        conn.execute("UPDATE routes SET updated_at = ? WHERE id = ?", (now, route_id))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def main(path: str, route_ids: list[str]) -> None:
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    conn = sqlite3.connect(path, isolation_level=None, timeout=5.0)
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    waits: list[float] = []
    errors: list[str] = []
    print("ready", flush=True)
    n = 0
    next_at = time.monotonic()
    while not stop.is_set():
        n += 1
        started = time.perf_counter()
        try:
            _write(conn, n, route_ids[n % len(route_ids)])
            waits.append((time.perf_counter() - started) * 1000)
        except sqlite3.Error as exc:
            errors.append(str(exc))
        next_at += PERIOD_S
        stop.wait(max(0.0, next_at - time.monotonic()))
    waits.sort()
    print(json.dumps({
        "writes": len(waits),
        "errors": errors[:20],
        "error_count": len(errors),
        "max_wait_ms": round(waits[-1], 1) if waits else None,
        "p99_wait_ms": round(waits[int(len(waits) * 0.99)], 1) if waits else None,
        "waits_over_100ms": sum(w > 100 for w in waits),
    }), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
