"""A stand-in for the dashboard: commits one row every 10 ms in its own process and
measures how long each write waited for the write lock (BEGIN IMMEDIATE) and how long the
whole write took. Prints `ready`, writes until its stdin closes, then prints one JSON
line: {"writes", "errors", "max_wait_ms", "waits_over_50ms", "max_write_ms"}.

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
    conn.execute("PRAGMA synchronous = NORMAL")
    writes = errors = over = 0
    longest = longest_write = 0.0
    print("ready", flush=True)
    n = 0
    while not stop.is_set():
        n += 1
        started = time.perf_counter()
        try:
            conn.execute("BEGIN IMMEDIATE")
            waited = (time.perf_counter() - started) * 1000
            conn.execute(
                "INSERT INTO audit_log (id, action, resource_type, created_at) VALUES (?, ?, ?, ?)",
                (f"w{n}-{time.time_ns()}", "writer.tick", "test", int(time.time())),
            )
            conn.execute("COMMIT")
            writes += 1
        except sqlite3.Error:
            errors += 1
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            continue
        longest = max(longest, waited)
        longest_write = max(longest_write, (time.perf_counter() - started) * 1000)
        over += waited > 50
        stop.wait(0.010)
    print(json.dumps({"writes": writes, "errors": errors, "max_wait_ms": round(longest, 1),
                      "waits_over_50ms": over, "max_write_ms": round(longest_write, 1)}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
