"""The one base class of the errors written for the person running the workers."""


class Problem(Exception):
    """An error whose message says, in words for the operator, what went wrong (and what
    to do): shown as it is, without a type name or a traceback, in the log, in
    `task_runs` and on the command line. Every error class of `db`, `tasks` and `workers`
    derives from it; anything else that reaches a job is shown with its type name."""
