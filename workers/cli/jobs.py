"""`proxyos-worker run-once JOB ...` and `proxyos-worker enqueue JOB ...`."""

from __future__ import annotations

import sys

from ..consumer import build_queue
from ..registry import JobContext, discover
from ..runner import run_job
from ..startup import open_database
from .common import Failure, add_command, print_json

DEFAULT_WAIT_S = 300.0


def _add_job_parsers(parent, jobs, foreground: bool) -> None:
    sub = parent.add_subparsers(dest="job", metavar="JOB")
    sub.required = True
    for job in jobs.values():
        if job.hidden:
            continue
        parser = sub.add_parser(job.name, help=job.help, description=job.help,
                                epilog=f"example:\n  {job.example}" if job.example else None,
                                formatter_class=parent.formatter_class)
        for option in job.options:
            parser.add_argument(option.flag, dest=option.dest, type=option.type,
                                metavar=option.metavar, help=option.help)
        if foreground:
            parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
            parser.add_argument(
                "--wait", type=float, default=DEFAULT_WAIT_S, metavar="SECONDS",
                help="if a run of this job is already in progress (a consumer's), wait up to this "
                f"long for it to end, then run; else the run is skipped (default {DEFAULT_WAIT_S:g}; "
                "0: skip at once)")


def register(commands) -> None:
    jobs = discover()
    once = add_command(
        commands,
        "run-once",
        help="run one job now, in the foreground",
        description="Run one job in this process, without the queue. The run is recorded in "
        "task_runs like any other; the summary is printed; the exit code is 1 if the job failed. "
        "If a run of the job is already in progress, this one waits for it to end (see --wait). "
        "A job that PROXYOS_JOBS disables here is refused (exit code 1).",
        example="proxyos-worker run-once backup --json",
    )
    _add_job_parsers(once, jobs, foreground=True)
    once.set_defaults(handler=handle_run_once)

    enqueue = add_command(
        commands,
        "enqueue",
        help="put one job on the queue for the consumers",
        description="Put one job on the queue and print its task id; a running consumer "
        "executes it. If a run of the job is in progress then, the request is retried "
        "(after 2, 4, 8 ... up to 30 s) until it runs. See `proxyos-worker status` and "
        "task_runs for the outcome. A job that PROXYOS_JOBS disables here is refused (exit code 1); "
        "a consumer whose PROXYOS_JOBS disables it records the request as skipped.",
        example="proxyos-worker enqueue backup",
    )
    _add_job_parsers(enqueue, jobs, foreground=False)
    enqueue.set_defaults(handler=handle_enqueue)


def _options(args, job) -> dict:
    return {o.dest: getattr(args, o.dest) for o in job.options if getattr(args, o.dest) is not None}


def _refuse_if_disabled(command: str, job: str, settings) -> None:
    refused = settings.jobs.refusal(job)
    if refused:
        raise Failure(f"{command} {job}: not run: {refused}")


def handle_run_once(args, settings) -> int:
    jobs = discover()
    job = jobs[args.job]
    _refuse_if_disabled("run-once", job.name, settings)
    if job.check_settings:
        job.check_settings(settings.env)
    open_database(settings).dispose()
    ctx = JobContext.inline(settings, lambda c, name, options: run_job(c, jobs[name], options).run_id)
    try:
        result = run_job(ctx, job, _options(args, job), wait_for_lease=args.wait,
                         on_wait=lambda busy: print(f"{job.name}: {busy}; waiting up to {args.wait:g} s for it to end",
                                                    file=sys.stderr, flush=True))
    finally:
        ctx.close()
    if args.json:
        print_json(result.as_dict())
    else:
        print(f"{job.name}: {result.status} in {result.duration_ms} ms")
        if job.render and result.summary:
            print(job.render(result.summary))
        for key, value in result.summary.items():
            if not job.render and not isinstance(value, list | dict):
                print(f"  {key}: {value}")
        if result.error:
            print(f"  error: {result.error}")
    return 1 if result.status == "error" else 0


def handle_enqueue(args, settings) -> int:
    _refuse_if_disabled("enqueue", args.job, settings)
    open_database(settings).dispose()
    queue, ctx = build_queue(settings)
    job = queue.jobs[args.job]
    task_id = queue.enqueue(job.name, on_demand=True, **_options(args, job))
    ctx.close()
    print(task_id)
    return 0
