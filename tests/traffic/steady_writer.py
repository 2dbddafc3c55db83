"""A stand-in for the dashboard: commits one row every 10 ms in its own process and
measures how long each write waited. Prints `ready`, writes until its stdin closes, then
prints one JSON line: {"writes", "errors", "max_wait_ms", "waits_over_50ms"}.

usage: python steady_writer.py DATABASE_FILE
"""

from __future__ import annotations

import json
import sqlite3
import sys
import threading
import time


def main(path: str) -> None:
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    conn = sqlite3.connect(path, isolation_level=None, timeout=5.0)
    conn.execute("PRAGMA busy_timeout = 5000")
    writes = errors = over = 0
    longest = 0.0
    print("ready", flush=True)
    n = 0
    while not stop.is_set():
        n += 1
        started = time.perf_counter()
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "INSERT INTO audit_log (id, action, resource_type, created_at) VALUES (?, ?, ?, ?)",
                (f"w{n}-{time.time_ns()}", "writer.tick", "test", int(time.time())),
            )
            conn.execute("COMMIT")
            writes += 1
        except sqlite3.Error:
            errors += 1
            conn.execute("ROLLBACK") if conn.in_transaction else None
        waited = (time.perf_counter() - started) * 1000
        longest = max(longest, waited)
        over += waited > 50
        stop.wait(0.010)
    print(json.dumps({"writes": writes, "errors": errors, "max_wait_ms": round(longest, 1),
                      "waits_over_50ms": over}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
