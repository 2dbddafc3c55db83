"""Stream checks: TCP connect, best-effort UDP, results in stream_health_checks."""

from __future__ import annotations

import sqlalchemy as sa

from db.schema import stream_health_checks
from tasks.health.batch import run_batch
from tests.toolkit.factories import add_stream
from tests.toolkit.processes import free_port


def check(engine, settings, stream_id):
    (result,) = run_batch(engine, settings, streams=[(stream_id, None)]).results
    return result


def test_tcp_stream_target_is_healthy(engine, settings, blackhole):
    host, port = blackhole.address.split(":")
    stream = add_stream(engine, host, int(port))
    result = check(engine, settings, stream)
    assert (result.status, result.protocol) == ("healthy", "tcp")
    assert blackhole.accepted.wait(5)
    with engine.connect() as conn:
        row = conn.execute(sa.select(stream_health_checks)).mappings().one()
    assert row["stream_id"] == stream
    assert (row["protocol"], row["status"], row["error"]) == ("tcp", "healthy", None)
    assert row["response_time_ms"] is not None


def test_tcp_stream_closed_port(engine, settings):
    port = free_port()
    stream = add_stream(engine, "127.0.0.1", port)
    result = check(engine, settings, stream)
    assert result.status == "unhealthy"
    assert result.error == f"tcp 127.0.0.1:{port}: connection refused"


def test_udp_listener_is_healthy(engine, settings, udp_listener):
    stream = add_stream(engine, "127.0.0.1", udp_listener, protocol="udp")
    result = check(engine, settings, stream)
    assert (result.status, result.protocol, result.error) == ("healthy", "udp", None)


def test_udp_closed_port_is_noticed(engine, settings):
    port = free_port()
    stream = add_stream(engine, "127.0.0.1", port, protocol="udp")
    result = check(engine, settings, stream)
    assert result.status == "unhealthy"
    assert result.error == f"udp 127.0.0.1:{port}: connection refused"


def test_tcp_and_udp_one_down_is_degraded(engine, settings, blackhole):
    port = int(blackhole.address.split(":")[1])  # TCP listens; nothing on UDP there
    stream = add_stream(engine, "127.0.0.1", port, protocol="tcp+udp")
    result = check(engine, settings, stream)
    assert (result.status, result.protocol) == ("degraded", "tcp+udp")
    assert result.error == f"udp 127.0.0.1:{port}: connection refused"


def test_bad_stream_protocol_is_a_config_error(engine, settings):
    stream = add_stream(engine, "127.0.0.1", 1, protocol="sctp")
    result = check(engine, settings, stream)
    assert result.status == "unhealthy"
    assert result.error == "config: protocol 'sctp' is not one of tcp, udp, tcp+udp"
