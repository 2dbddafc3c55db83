"""badNonce answers are retried: a Pebble that rejects 40% of good nonces still issues."""

from __future__ import annotations

import dataclasses

import pytest

from tasks.certs.sweep import run_sweep
from tests.toolkit.factories import add_provider, add_route, unique
from tests.toolkit.servers import serving
from tests.toolkit.servers.pebble import start_pebble


@pytest.fixture(scope="module")
def grumpy_pebble(tmp_path_factory, bind):
    yield from serving(start_pebble(tmp_path_factory.mktemp("pebble-nonce"), bind.resolver_port,
                                    env={"PEBBLE_WFE_NONCEREJECT": "40"}))


def test_bad_nonces_are_retried(engine, settings, bind, grumpy_pebble):
    settings = dataclasses.replace(settings, directory=grumpy_pebble.directory,
                                   ca_bundle=str(grumpy_pebble.ca_bundle))
    provider = add_provider(engine, bind.credentials)
    for _ in range(3):
        add_route(engine, unique(), provider)
    summary = run_sweep(engine, settings)
    assert summary.get("issued") == 3, summary
    log = (grumpy_pebble.ca_bundle.parent / "pebble.log").read_text()
    # Pebble does not log each rejection; with 40% of ~30 POSTs rejected, a run without
    # a single badNonce has a probability of about 0.6**30 (2e-7).
    assert "Configured to reject 40% of good nonces" in log
