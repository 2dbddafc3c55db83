"""What the metrics tests share: one scrape of `GET /metrics`'s collector, parsed with
prometheus_client's own parser into {(name, labels): value}."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from workers.api.metrics import WorkerCollector, render
from workers.config import load

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def settings_for(url: str, log: Path | None = None, **env: str):
    values = {"PROXYOS_DATABASE_URL": url, **env}
    if log is not None:
        values["PROXYOS_ACCESS_LOG"] = str(log)
    return load(values)


def parse(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(engine: sa.Engine, log: Path | None = None, **kwargs) -> Samples:
    url = engine.url.render_as_string(hide_password=False)
    return parse(render(WorkerCollector(engine, settings_for(url, log), **kwargs)).decode())


def value(samples: Samples, name: str, **labels: str) -> float | None:
    """The sample `name` whose labels include `labels` (exactly one), or None."""
    found = [v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls)]
    assert len(found) <= 1, f"{name} {labels}: {len(found)} samples"
    return found[0] if found else None


def labelled(samples: Samples, name: str) -> set[tuple[tuple[str, str], ...]]:
    """The label sets of the samples named `name` (each sorted by label name)."""
    return {labels for n, labels in samples if n == name}


def route_counters(samples: Samples) -> dict[str, tuple[float, float, float]]:
    """{route_id: (requests, errors, bytes)}"""
    out: dict[str, list[float]] = {}
    for index, name in enumerate(("proxyos_worker_route_requests_total", "proxyos_worker_route_errors_total",
                                  "proxyos_worker_route_sent_bytes_total")):
        for (n, labels), v in samples.items():
            if n == name:
                out.setdefault(dict(labels)["route_id"], [0.0, 0.0, 0.0])[index] = v
    return {route: tuple(values) for route, values in out.items()}
