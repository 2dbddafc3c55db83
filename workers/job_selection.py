"""`PROXYOS_JOBS`: which jobs these workers run, so that one writer does each kind of work.

The value is `all` (the default) or a comma list of areas (the modules of `workers/jobs/`:
backup, certs, health, traffic) and job names, read left to right; `-name` leaves an area
or a job out again (`all,-health`, `traffic,backup`, `all,-ingest`). A list that begins
with `-name` starts from all. A name that is both an area and a job (`health`) means the
area. A disabled job is not scheduled, is refused by `run-once` and `enqueue`, and a
consumer that receives one records it as skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

VARIABLE = "PROXYOS_JOBS"


@dataclass(frozen=True)
class JobSelection:
    spec: str = "all"
    disabled: frozenset[str] = frozenset()

    def allows(self, job: str) -> bool:
        return job not in self.disabled

    def refusal(self, job: str) -> str | None:
        """Why `job` must not run here, or None if it may."""
        if self.allows(job):
            return None
        return f"{job} is disabled here by {VARIABLE}={self.spec} (add it to {VARIABLE}, or run it where it is enabled)"


def parse(raw: str | None, areas: Mapping[str, str]) -> JobSelection:
    """`raw` against the known jobs (`areas`: job name -> its area). Raises ConfigError
    for an unknown name or an empty item."""
    from .config import ConfigError  # config reads this module; the import is deferred

    spec = (raw or "").strip() or "all"
    everything = set(areas)
    by_area: dict[str, set[str]] = {}
    for job, area in areas.items():
        by_area.setdefault(area, set()).add(job)
    items = [item.strip() for item in spec.split(",")]
    enabled: set[str] = set(everything) if items[0].startswith("-") else set()
    for item in items:
        name = item.removeprefix("-").strip()
        if name == "all":
            chosen = everything
        elif name in by_area:
            chosen = by_area[name]
        elif name in everything:
            chosen = {name}
        else:
            raise ConfigError(VARIABLE, spec, accepted(areas))
        if item.startswith("-"):
            enabled -= chosen
        else:
            enabled |= chosen
    return JobSelection(spec=spec, disabled=frozenset(everything - enabled))


def accepted(areas: Mapping[str, str]) -> str:
    return (
        "all, or a comma list of areas (" + ", ".join(sorted(set(areas.values()))) + ") and jobs ("
        + ", ".join(sorted(areas)) + "), each with a leading - to leave it out, e.g. all,-health"
    )


def from_env(env: Mapping[str, str]) -> JobSelection:
    from .registry import discover  # the registry imports config, which calls this

    return parse(env.get(VARIABLE), {job.name: job.area for job in discover().values()})


def enabled_jobs(jobs: Iterable, selection: JobSelection) -> list:
    """The jobs of `jobs` (registry `Job`s) that `selection` lets run here."""
    return [job for job in jobs if selection.allows(job.name)]
