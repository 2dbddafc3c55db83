"""No bad item stops the certs run: hostile routes, aliases, certificate rows and provider
credentials each become a recorded route problem or a certificate's `last_error`, and
the good certificate beside them is issued. A database that cannot be used still fails
the run as a whole."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from db.engine import create_engine, write_transaction
from db.schema import certificates, routes
from db.sql import new_id
from tasks.certs.credentials import encrypt
from tasks.certs.sweep import run_sweep
from tests.toolkit.factories import SECRET, add_certificate, add_provider, add_route, unique

DEEP = "[" * 100_000 + "]" * 100_000


def _raw(engine, sql: str, **params) -> None:
    """Write values as another program could (SQLite keeps any type in any column)."""
    with write_transaction(engine) as conn:
        conn.execute(sa.text(sql), params)


def _cert(engine, domain):
    with engine.connect() as conn:
        return conn.execute(sa.select(certificates).where(certificates.c.domain == domain)).one()


def _assert_good_issued(engine, summary, good):
    row = _cert(engine, good)
    assert row.status == "active" and row.last_error is None, (row.last_error, summary)
    json.dumps(summary)  # a summary task_runs can store


def test_hostile_routes_and_aliases_are_reported_and_the_rest_goes_on(any_engine, settings, bind):
    engine = any_engine
    provider = add_provider(engine, bind.credentials)
    add_route(engine, good := unique(), provider)
    bad = {
        "deep": add_route(engine, unique(), provider),
        "deep-object": add_route(engine, unique(), provider),
        "not-names": add_route(engine, unique(), provider, aliases=["ok.example.test"]),
        "spaces": add_route(engine, "bad name with spaces.example.test", provider),
        "too-long": add_route(engine, "x" * 300 + ".example.test", provider),
        "empty": add_route(engine, " ", provider),
        "emoji": add_route(engine, "💥.example.test", provider),
    }
    _raw(engine, "UPDATE routes SET aliases = :v WHERE id = :id", v=DEEP, id=bad["deep"])
    _raw(engine, "UPDATE routes SET aliases = :v WHERE id = :id", v='{"a":' * 50_000 + "1" + "}" * 50_000,
         id=bad["deep-object"])
    _raw(engine, "UPDATE routes SET aliases = :v WHERE id = :id", v='["ok.example.test", 5, null]',
         id=bad["not-names"])
    summary = run_sweep(engine, settings)
    _assert_good_issued(engine, summary, good)
    with engine.connect() as conn:
        domains = dict(conn.execute(sa.select(routes.c.id, routes.c.domain)).all())
    problems = " | ".join(summary["route_problems"])
    for name, route_id in bad.items():
        assert f"route {domains[route_id]}" in problems, (name, problems)
    assert "aliases is not a JSON list" in problems


def test_odd_values_sqlite_lets_in(engine, settings, bind):
    """SQLite's type affinity keeps bytes in a TEXT column and text in an INTEGER one."""
    provider = add_provider(engine, bind.credentials)
    add_route(engine, good := unique(), provider)
    blob = add_route(engine, unique(), provider)
    _raw(engine, "UPDATE routes SET domain = :v WHERE id = :id", v=b"\xffblob.example.test", id=blob)
    texty = add_route(engine, unique(), provider)
    _raw(engine, "UPDATE routes SET created_at = 'yesterday', aliases = :a WHERE id = :id",
         a=b'["x.example.test"]', id=texty)
    summary = run_sweep(engine, settings)
    _assert_good_issued(engine, summary, good)
    problems = " | ".join(summary["route_problems"])
    assert "blob.example.test" in problems and len(summary["route_problems"]) == 2, problems


def test_listing_shows_odd_rows(engine, worker_env, cli):
    """`proxyos-worker certs` and `status` on rows holding text, bytes and far-off times."""
    route_id = add_route(engine, domain := unique(), None, tls_mode="dns")
    add_certificate(engine, domain, route_id=route_id, status="error", created_at=1)
    _raw(engine, "UPDATE certificates SET expires_at = 'soon', next_attempt_at = :b, renew_at = :far, "
         "lease_expires_at = 'never', last_error = :b", b=b"\xff\x00", far=2**62)
    for args in (["certs"], ["certs", "--json"], ["status", "--json"]):
        done = cli(args, worker_env)
        assert done.returncode == 0 and domain in done.stdout, (args, done.stderr[-2000:])


def test_hostile_certificate_rows_are_recorded_or_processed(engine, settings, bind):
    provider = add_provider(engine, bind.credentials)
    add_route(engine, good := unique(), provider)
    hostile = {unique(): values for values in (
        {"names": DEEP},
        {"names": '{"a": 1}', "failures": "many"},
        {"status": "error", "failures": "many", "expires_at": "soon"},
        {"status": "active", "issued_at": "then", "expires_at": b"\x00", "renew_at": None},
        {"status": "error", "next_attempt_at": "later", "lease_expires_at": "never", "lease_owner": "ghost"},
        {"status": "active", "ari_cert_id": "x", "ari_next_check_at": "now", "renew_at": 1e300},
    )}
    for domain, values in hostile.items():
        route_id = add_route(engine, domain, provider)
        cert_id = add_certificate(engine, domain, route_id=route_id, created_at=1)
        sets = ", ".join(f"{column} = :{column}" for column in values)
        _raw(engine, f"UPDATE certificates SET {sets} WHERE id = :id", id=cert_id, **values)
    summary = run_sweep(engine, settings)
    _assert_good_issued(engine, summary, good)
    for domain in hostile:
        row = _cert(engine, domain)
        assert row.status == "active" or row.last_error, (domain, row)


@pytest.mark.parametrize("credentials", [
    '{"nameserver": ' * 50_000 + "1" + "}" * 50_000,
    DEEP,
    "enc:v2:" + "A" * 10,
    "enc:v2:!!!not-base64!!!",
    encrypt("[1, 2, 3]", SECRET),
    encrypt("\udcff" if False else "not json at all", SECRET),
    json.dumps({"nameserver": ["127.0.0.1"], "port": "fifty-three", "tsig_key": {"k": 1}, "tsig_secret": 123}),
    json.dumps({"nameserver": "127.0.0.1", "port": 10**30, "tsig_key": "k", "tsig_secret": "c2VjcmV0"}),
    json.dumps({"nameserver": "127.0.0.1", "port": -1, "tsig_key": "k.", "tsig_secret": "c2VjcmV0",
                "tsig_algorithm": "no-such-algorithm"}),
    json.dumps({"nameserver": "not an address", "tsig_key": "\x00", "tsig_secret": "c2VjcmV0"}),
])
def test_hostile_provider_credentials_are_recorded(engine, settings, bind, credentials):
    add_route(engine, good := unique(), add_provider(engine, bind.credentials))
    add_route(engine, bad := unique(), add_provider(engine, credentials, fmt="raw", name="hostile"))
    summary = run_sweep(engine, settings)
    _assert_good_issued(engine, summary, good)
    row = _cert(engine, bad)
    assert row.status == "error" and row.last_error, row
    assert "Traceback" not in row.last_error


def test_odd_provider_rows_sqlite_lets_in(engine, settings, bind):
    add_route(engine, good := unique(), add_provider(engine, bind.credentials))
    blob = add_provider(engine, bind.credentials, name="blob")
    _raw(engine, "UPDATE dns_providers SET credentials = :v, type = :t WHERE id = :id",
         v=b"\xff\xfe{}", t=b"rfc2136", id=blob)
    number = add_provider(engine, bind.credentials, name="number")
    _raw(engine, "UPDATE dns_providers SET credentials = 12345, enabled = 'yes' WHERE id = :id", id=number)
    add_route(engine, first := unique(), blob)
    add_route(engine, second := unique(), number)
    summary = run_sweep(engine, settings)
    _assert_good_issued(engine, summary, good)
    for domain in (first, second):
        row = _cert(engine, domain)
        assert row.status == "error" and row.last_error, row


def test_leftover_txt_of_a_hostile_provider_does_not_stop_the_run(engine, settings, bind):
    """A TXT value journalled for removal whose provider's credentials are hostile."""
    from db.schema import cert_dns_records
    from tasks.certs.sync import sync_certificates

    add_route(engine, good := unique(), add_provider(engine, bind.credentials))
    hostile = add_provider(engine, '{"tsig_secret": ' * 50_000 + "1" + "}" * 50_000, fmt="raw", name="hostile")
    add_route(engine, bad := unique(), hostile)
    sync_certificates(engine, 0)
    with write_transaction(engine) as conn:
        conn.execute(cert_dns_records.insert().values(
            id=new_id(), certificate_id=_cert(engine, bad).id, provider_id=hostile, fqdn=f"_acme-challenge.{bad}",
            zone="example.test", value="left-behind", created_at=1))
    summary = run_sweep(engine, settings)
    _assert_good_issued(engine, summary, good)
    row = _cert(engine, bad)
    assert row.status == "error" and row.last_error, row


def test_an_unusable_database_still_fails_the_run(tmp_path: Path, settings):
    path = tmp_path / "not-a-database.db"
    path.write_bytes(b"this is not a database" * 100)
    engine = create_engine(f"sqlite:///{path}")
    try:
        with pytest.raises(sa.exc.DatabaseError):
            run_sweep(engine, settings)
    finally:
        engine.dispose()
