"""How a job says it did nothing on purpose (recorded as `skipped`, not as an error)."""


class Skipped(Exception):
    """Raised by a job that had nothing to do, or must not run here; the message says why."""
