"""Queue throughput: no-op tasks through the project's Huey app (run history on) and
through a bare Huey on the same kind of storage, in one run.

    python -m bench.queue [--tasks 2000] [--workers 4] [--queue sqlite|redis] [--redis-url URL]

Prints enqueued/s and processed/s for both, their ratio, and one JSON line.
Goal (issue 2): run history costs at most 20% of bare Huey's throughput on SQLite.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import tempfile
import threading
import time
from pathlib import Path

from huey import RedisHuey, SqliteHuey
from huey.consumer import Consumer

from db.engine import create_engine
from db.migrate import upgrade
from workers import config
from workers.queue import JobQueue, build_huey
from workers.registry import Job, JobContext


class Counter:
    def __init__(self, target: int) -> None:
        self.target, self.count, self.done = target, 0, threading.Event()
        self._lock = threading.Lock()

    def hit(self) -> None:
        with self._lock:
            self.count += 1
            if self.count >= self.target:
                self.done.set()


def consume(huey, counter: Counter, workers: int) -> float:
    """Seconds for `workers` consumer threads to process everything queued."""
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    consumer = Consumer(huey, workers=workers, periodic=False, worker_type="thread",
                        initial_delay=0.001, max_delay=0.01)
    started = time.perf_counter()
    consumer.start()
    if not counter.done.wait(600):
        raise SystemExit(f"only {counter.count} of {counter.target} tasks were processed in 600 s")
    elapsed = time.perf_counter() - started
    consumer.stop(graceful=True)
    for s, handler in previous.items():
        signal.signal(s, handler)
    return elapsed


def bare(kind: str, location: str, tasks: int, workers: int) -> dict:
    huey = RedisHuey("bench-bare", url=location, results=False) if kind == "redis" else \
        SqliteHuey("bench-bare", filename=location, results=False)
    huey.flush()
    counter = Counter(tasks)

    @huey.task()
    def noop(options: dict) -> None:
        counter.hit()

    started = time.perf_counter()
    for _ in range(tasks):
        noop({})
    enqueue_s = time.perf_counter() - started
    process_s = consume(huey, counter, workers)
    return {"enqueued_per_s": tasks / enqueue_s, "processed_per_s": tasks / process_s}


def project(kind: str, location: str, db_url: str, tasks: int, workers: int, name: str) -> dict:
    env = {"PROXYOS_DATABASE_URL": db_url,
           "PROXYOS_QUEUE_URL": location if kind == "redis" else f"sqlite:///{location}"}
    settings = config.load(env)
    ctx = JobContext(settings, buffered_history=True)  # as the consumer runs it
    counter = Counter(tasks)
    job = Job(name, "a no-op", run=lambda _ctx, _options: counter.hit(), exclusive=False)
    queue = JobQueue(build_huey(settings.queue), {name: job}, context=lambda: ctx)
    queue.huey.flush()
    started = time.perf_counter()
    for _ in range(tasks):
        queue.enqueue(name)
    enqueue_s = time.perf_counter() - started
    process_s = consume(queue.huey, counter, workers)
    ctx.history.flush()
    with ctx.engine.connect() as conn:
        recorded = conn.exec_driver_sql(
            "SELECT count(*) FROM task_runs WHERE job = ? AND status = 'ok'", (name,)).scalar()
    ctx.close()
    assert recorded == tasks, f"{recorded} runs recorded for {tasks} tasks"
    return {"enqueued_per_s": tasks / enqueue_s, "processed_per_s": tasks / process_s, "runs_recorded": recorded}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--queue", choices=("sqlite", "redis"), default="sqlite")
    parser.add_argument("--redis-url", default=os.environ.get("PROXYOS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"))
    parser.add_argument("--rounds", type=int, default=3, help="alternate bare/project runs; best of each is kept")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        db_url = f"sqlite:///{Path(tmp) / 'proxyos.db'}"
        engine = create_engine(db_url)
        upgrade(engine)
        engine.dispose()
        results: dict[str, list[dict]] = {"bare": [], "project": []}
        for round_no in range(args.rounds):
            for name in ("bare", "project"):
                location = args.redis_url if args.queue == "redis" else str(Path(tmp) / f"{name}{round_no}.db")
                outcome = bare(args.queue, location, args.tasks, args.workers) if name == "bare" else \
                    project(args.queue, location, db_url, args.tasks, args.workers, f"noop{round_no}")
                results[name].append(outcome)
                print(f"round {round_no + 1} {name:8s} enqueued {outcome['enqueued_per_s']:8.0f}/s   "
                      f"processed {outcome['processed_per_s']:8.0f}/s", flush=True)

    best = {name: {key: max(r[key] for r in runs) for key in ("enqueued_per_s", "processed_per_s")}
            for name, runs in results.items()}
    ratio_enqueue = best["project"]["enqueued_per_s"] / best["bare"]["enqueued_per_s"]
    ratio_process = best["project"]["processed_per_s"] / best["bare"]["processed_per_s"]
    print()
    print(f"queue: {args.queue}, {args.tasks} no-op tasks, {args.workers} worker threads, best of {args.rounds}")
    print(f"{'':12s}{'enqueued/s':>12s}{'processed/s':>13s}")
    for name in ("bare", "project"):
        print(f"{name:12s}{best[name]['enqueued_per_s']:12.0f}{best[name]['processed_per_s']:13.0f}")
    print(f"{'ratio':12s}{ratio_enqueue:12.2f}{ratio_process:13.2f}   (project / bare Huey; goal >= 0.80)")
    print(json.dumps({
        "bench": "queue", "queue": args.queue, "tasks": args.tasks, "workers": args.workers,
        "bare": best["bare"], "project": best["project"],
        "ratio_enqueued": round(ratio_enqueue, 3), "ratio_processed": round(ratio_process, 3),
    }))


if __name__ == "__main__":
    main()
