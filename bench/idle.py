"""Benchmark of an idle worker: what `proxyos-worker run` costs when there is nothing to
do, beside a bare Huey consumer with one periodic task.

Both start on empty state (our worker on a new, migrated SQLite database with no routes,
no certificates and no access log; the bare consumer on its own SQLite queue), with the
same number of worker threads, and run side by side. After a warm-up, for `--seconds`
each is measured from /proc: CPU (user + system, as a share of one core), memory (RSS at
the end, and its peak), the log lines it wrote, and for ours the `task_runs` rows it
wrote.

    python -m bench.idle [--seconds 60] [--warmup 10] [--workers 4]

Prints the figures side by side and one JSON line. The machine is shared: the figures
are noisy, and a second or two of CPU in a minute is within that noise.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

BARE_HUEY = textwrap.dedent("""
    from huey import SqliteHuey, crontab

    huey = SqliteHuey(filename={queue!r})


    @huey.periodic_task(crontab(minute="*"))
    def tick():
        return None
""")

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the process (all its threads) and its waited-for children."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(fields[i]) for i in (11, 12, 13, 14))
    return (utime + stime + cutime + cstime) / CLOCK_TICKS


def memory_mb(pid: int) -> tuple[float, float]:
    """(RSS now, peak RSS) in MB."""
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    return int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024


def lines_in(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def task_runs(db: Path) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT count(*) FROM task_runs").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0
    finally:
        conn.close()


class Measured:
    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path, db: Path | None) -> None:
        self.name, self.log, self.db = name, log, db
        self.out = log.open("wb")
        self.process = subprocess.Popen(argv, env=env, stdout=self.out, stderr=subprocess.STDOUT,
                                        start_new_session=True)

    def mark(self) -> None:
        self.started = time.monotonic()
        self.cpu0 = cpu_seconds(self.process.pid)
        self.lines0 = lines_in(self.log)
        self.rows0 = task_runs(self.db) if self.db else 0

    def figures(self) -> dict:
        took = time.monotonic() - self.started
        if self.process.poll() is not None:
            sys.exit(f"{self.name} exited early (code {self.process.returncode}); its log: {self.log}")
        cpu = cpu_seconds(self.process.pid) - self.cpu0
        rss, peak = memory_mb(self.process.pid)
        out = {
            "cpu_percent": round(100 * cpu / took, 2),
            "rss_mb": round(rss, 1),
            "peak_rss_mb": round(peak, 1),
            "log_lines_per_min": round((lines_in(self.log) - self.lines0) * 60 / took, 1),
        }
        if self.db:
            out["task_runs_rows_per_min"] = round((task_runs(self.db) - self.rows0) * 60 / took, 1)
        return out

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.out.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long both are measured")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds after start-up before measuring")
    parser.add_argument("--workers", type=int, default=4, help="worker threads of each consumer")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-idle-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROXYOS_")}
    db = work / "proxyos.db"
    ours_env = {**env, "PROXYOS_DATABASE_URL": f"sqlite:///{db}",
                "PROXYOS_QUEUE_URL": f"sqlite:///{work / 'queue.db'}",
                "PROXYOS_ACCESS_LOG": str(work / "access.log"),
                "PROXYOS_CERT_DIR": str(work / "certs"), "PROXYOS_BACKUP_DIR": str(work / "backups")}
    bare_module = work / "bare_huey.py"
    bare_module.write_text(BARE_HUEY.format(queue=str(work / "bare-queue.db")))
    consumer = Path(sys.executable).with_name("huey_consumer")
    measured = [
        Measured("proxyos-worker run", [sys.executable, "-m", "workers.cli", "run", "--workers", str(args.workers)],
                 ours_env, work / "ours.log", db),
        Measured("bare Huey consumer", [str(consumer), "bare_huey.huey", "-w", str(args.workers), "-k", "thread"],
                 {**env, "PYTHONPATH": str(work)}, work / "bare.log", None),
    ]
    try:
        time.sleep(args.warmup)  # start-up (imports, migrations) is not what is measured
        for m in measured:
            m.mark()
        print(f"measuring both for {args.seconds:.0f} s ...", flush=True)
        time.sleep(args.seconds)
        figures = {m.name: m.figures() for m in measured}
    finally:
        for m in measured:
            m.stop()
    ours, bare = figures["proxyos-worker run"], figures["bare Huey consumer"]
    print(f"{'':28} {'proxyos-worker run':>20} {'bare Huey consumer':>20}")
    for key in ("cpu_percent", "rss_mb", "peak_rss_mb", "log_lines_per_min", "task_runs_rows_per_min"):
        print(f"{key:28} {ours.get(key, ''):>20} {bare.get(key, '-'):>20}")
    ratio = ours["cpu_percent"] / bare["cpu_percent"] if bare["cpu_percent"] else float("inf")
    print(f"CPU: {ratio:.1f}x the bare consumer's (goal: within 2x)")
    print(json.dumps({"bench": "idle", "seconds": args.seconds, "workers": args.workers, "ours": ours,
                      "bare_huey": bare, "cpu_ratio": round(ratio, 2)}, sort_keys=True))


if __name__ == "__main__":
    main()
