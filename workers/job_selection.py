"""`PROXYOS_JOBS`: which jobs these workers run, so that one writer does each kind of work.

The value is `all` (the default) or a comma list of areas (`workers.jobs.AREAS`:
alerts, backup, certs, health, traffic) and job names, read left to right; `-name` leaves an area
or a job out again (`all,-health`, `traffic,backup`, `all,-ingest`). A list that begins
with `-name` starts from all. A name that is both an area and a job (`health`) means the
area. A disabled job is not scheduled, is refused by `run-once` and `enqueue`, and a
consumer that receives one records it as skipped. A job that hands its work to another
(`Job.feeds`: health-dispatch to health-batch) cannot be enabled without it.
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


def parse(raw: str | None, areas: Mapping[str, str], feeds: Mapping[str, Iterable[str]] | None = None) -> JobSelection:
    """`raw` against the known jobs (`areas`: job name -> its area; `feeds`: job name ->
    the jobs it hands its work to). Raises ConfigError for an unknown name, an empty item,
    or a job enabled without a job it feeds (its work would be claimed and never done)."""
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
    for job, targets in (feeds or {}).items():
        missing = sorted(t for t in targets if t not in enabled)
        if job in enabled and missing:
            raise ConfigError(VARIABLE, spec, f"{job} together with {', '.join(missing)} ({job} claims work "
                              f"that only {', '.join(missing)} does): enable both or neither")
    return JobSelection(spec=spec, disabled=frozenset(everything - enabled))


def accepted(areas: Mapping[str, str]) -> str:
    return (
        "all, or a comma list of areas (" + ", ".join(sorted(set(areas.values()))) + ") and jobs ("
        + ", ".join(sorted(areas)) + "), each with a leading - to leave it out, e.g. all,-health"
    )


def from_env(env: Mapping[str, str]) -> JobSelection:
    from .registry import discover  # the registry imports config, which calls this

    jobs = discover().values()
    return parse(env.get(VARIABLE), {job.name: job.area for job in jobs}, {job.name: job.feeds for job in jobs})


def enabled_jobs(jobs: Iterable, selection: JobSelection) -> list:
    """The jobs of `jobs` (registry `Job`s) that `selection` lets run here."""
    return [job for job in jobs if selection.allows(job.name)]
