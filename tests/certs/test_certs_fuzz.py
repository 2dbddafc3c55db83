"""Property-based tests (Hypothesis) of the certs run with arbitrary and hostile input:
route domains and `aliases`, certificate rows, DNS provider rows and credentials (JSON
of any shape, any encoding, encrypted or not). The property: the run finishes, every bad
item is recorded (a route problem or the certificate's `last_error`), every good item is
processed (issued by Pebble).

The budget is fixed and the examples derandomized, so every run tries the same inputs:
PROXYOS_FUZZ_EXAMPLES raises the budget, PROXYOS_FUZZ_SEED picks other examples."""

from __future__ import annotations

import json
import os
import time

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from db.engine import write_transaction
from db.schema import (
    audit_log,
    cert_dns_records,
    cert_issuance_log,
    cert_orders,
    certificates,
    dns_providers,
    routes,
)
from db.sql import new_id
from tasks.certs.credentials import encrypt
from tasks.certs.errors import CertError
from tasks.certs.issue import build_provider
from tasks.certs.ownership import is_owned
from tasks.certs.policy import due_reason
from tasks.certs.settings import CertSettings
from tasks.certs.sweep import run_sweep
from tasks.certs.sync import plan, sync_certificates
from tests.toolkit.certs import cert_settings
from tests.toolkit.factories import SECRET, add_certificate, add_provider, add_route, unique

EXAMPLES = int(os.environ.get("PROXYOS_FUZZ_EXAMPLES", "0"))
SEED = os.environ.get("PROXYOS_FUZZ_SEED")


@pytest.fixture(autouse=True)
def _own_redaction_registry():
    """Hostile credentials register hostile values for redaction (`127.0.0.1`, say): keep
    them from masking other tests' messages."""
    from tasks import redaction

    saved = redaction._secrets.copy(), redaction._pattern
    yield
    with redaction._lock:
        redaction._secrets.clear()
        redaction._secrets.update(saved[0])
        redaction._pattern = saved[1]


def budget(default: int):
    """Hypothesis settings: `default` examples (or PROXYOS_FUZZ_EXAMPLES), the same ones
    every run unless PROXYOS_FUZZ_SEED is set."""
    def wrap(test):
        test = settings(max_examples=EXAMPLES or default, deadline=None, derandomize=SEED is None, database=None,
                        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                               HealthCheck.data_too_large])(test)
        return seed(int(SEED))(test) if SEED else test
    return wrap


def nested(depth: int, kind: str = "list") -> str:
    return ("[" * depth + "]" * depth) if kind == "list" else ('{"a":' * depth + "1" + "}" * depth)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
label = st.text(alphabet="abcxyz019-_*üß.", min_size=1, max_size=20)
hostile_names = st.one_of(
    st.text(max_size=40),
    st.builds(lambda a: f"{a}.example.test", label),
    st.sampled_from(["", " ", ".", "*", "*.", "a..b.example.test", "-x-.example.test", "x" * 300,
                     "bücher.example.test", "💥.example.test", "例え.テスト", "EXAMPLE.TEST.", "*.*.example.test",
                     "l" * 64 + ".example.test", "under_score.example.test", "a b.example.test"]),
)
hostile_aliases = st.one_of(
    st.none(),
    st.text(max_size=40),
    st.builds(json.dumps, json_values),
    st.builds(json.dumps, st.lists(hostile_names, max_size=3)),
    st.builds(nested, st.integers(900, 60_000), st.sampled_from(["list", "object"])),
)


def credential_texts(bind_port: int):
    good = {"nameserver": "127.0.0.1", "port": bind_port, "tsig_key": "proxyos-test.",
            "tsig_algorithm": "hmac-sha256"}
    mutated = st.builds(
        lambda extra, drop: json.dumps({k: v for k, v in {**good, **extra}.items() if k not in drop}),
        st.dictionaries(st.sampled_from(sorted(good) + ["tsig_secret", "api_url", "api_key", "api_token"]),
                        json_values | st.sampled_from(["c2VjcmV0", "!!", "http://u:p@127.0.0.1:9"]), max_size=3),
        st.sets(st.sampled_from(sorted(good) + ["tsig_secret"]), max_size=2),
    )
    plain = st.one_of(st.text(max_size=40), st.builds(json.dumps, json_values), mutated,
                      st.builds(nested, st.integers(900, 60_000), st.sampled_from(["list", "object"])))
    return st.one_of(
        plain,
        st.builds(lambda text: encrypt(text, SECRET), plain),
        st.builds(lambda text: encrypt(text, "another-secret-entirely"), plain),
        st.builds(lambda text: "enc:v2:" + text, st.text(max_size=60)),
        st.builds(lambda text: "enc:v1:" + text, st.text(alphabet="AB-_=", max_size=60)),
    )


provider_types = st.sampled_from(["rfc2136", "rfc2136", "powerdns", "cloudflare", "route53", "porkbun", "godaddy",
                                  "digitalocean", "", "RFC2136", "no-such-type"])


def column_values(postgres: bool):
    """What another program may leave in a certificates column."""
    if postgres:  # typed columns: only numbers fit
        return st.none() | st.integers(-(2**63), 2**63 - 1)
    return (st.none() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(max_size=12)
            | st.binary(max_size=6))  # (SQLite stores NaN as NULL)


def cert_rows(postgres: bool):
    number = column_values(postgres)
    nonnull = number.filter(lambda v: v is not None)  # NOT NULL columns
    return st.fixed_dictionaries({
        "status": st.sampled_from(["provisioning", "active", "renewing", "error", "expired", "none"])
        | st.text(max_size=8),
        "names": st.none() | hostile_aliases,
        "issued_at": number, "expires_at": number, "renew_at": number, "next_attempt_at": number,
        "failures": nonnull, "lease_expires_at": number, "ari_next_check_at": number,
        "lease_owner": st.none() | st.text(max_size=8),
        "auto_renew": st.sampled_from([0, 1]) if postgres else nonnull,
    })


def route_specs(postgres: bool, bind_port: int):
    return st.lists(st.fixed_dictionaries({
        "domain": hostile_names if postgres else hostile_names | st.binary(max_size=20),
        "aliases": hostile_aliases,
        "provider": st.one_of(st.sampled_from(["good", "none", "ghost"]),
                              st.tuples(provider_types, credential_texts(bind_port))),
        "row": st.none() | cert_rows(postgres),
    }), max_size=3)


def _postgres(engine) -> bool:
    return engine.dialect.name == "postgresql"


def _clean(text, postgres: bool):
    """PostgreSQL's text holds no NUL character."""
    if postgres and isinstance(text, str):
        return text.replace("\x00", "")
    return text


def _reset(engine) -> None:
    with write_transaction(engine) as conn:
        for table in (cert_dns_records, cert_orders, certificates, routes, dns_providers, audit_log,
                      cert_issuance_log):
            conn.execute(table.delete())


def _insert_hostile(engine, specs, good_provider: str) -> list[str]:
    postgres = _postgres(engine)
    route_ids, seen = [], set()
    for spec in specs:
        domain = _clean(spec["domain"], postgres)
        if domain in seen:
            continue
        seen.add(domain)
        provider = spec["provider"]
        if provider == "good":
            provider_id = good_provider
        elif provider == "none":
            provider_id = None
        elif provider == "ghost":
            provider_id = new_id()
        else:
            provider_id = add_provider(engine, _clean(provider[1], postgres), type_=provider[0], fmt="raw",
                                       name="hostile")
        route_id = add_route(engine, unique(), provider_id, tls_mode="dns")
        with write_transaction(engine) as conn:
            conn.execute(sa.text("UPDATE routes SET domain = :d, aliases = :a WHERE id = :id"),
                         {"d": domain, "a": _clean(spec["aliases"], postgres), "id": route_id})
        if spec["row"] is not None:
            values = {k: _clean(v, postgres) for k, v in spec["row"].items()}
            with write_transaction(engine) as conn:
                cert_id = add_certificate(conn, domain, route_id=route_id, created_at=1)
                sets = ", ".join(f"{column} = :{column}" for column in values)
                conn.execute(sa.text(f"UPDATE certificates SET {sets} WHERE id = :id"), {"id": cert_id, **values})
        route_ids.append(route_id)
    return route_ids


def _check(engine, summary: dict, good: str, hostile_ids: list[str]) -> None:
    json.dumps(summary)  # task_runs can store it
    now = time.time()
    with engine.connect() as conn:
        rows = conn.execute(sa.select(certificates, routes.c.tls_mode)
                            .outerjoin(routes, routes.c.id == certificates.c.route_id)).all()
        domains = dict(conn.execute(sa.select(routes.c.id, routes.c.domain)).all())
    by_route: dict[str, list] = {}
    for row in rows:
        by_route.setdefault(row.route_id, []).append(row)
    [good_row] = [r for r in rows if r.domain == good]
    assert good_row.status == "active" and good_row.last_error is None, (good_row, summary)
    problems = " | ".join(summary["route_problems"])
    for route_id in hostile_ids:
        domain = domains[route_id]
        shown = domain if isinstance(domain, str) else repr(domain)
        if f"route {shown}" in problems:
            continue
        owned = [r for r in by_route.get(route_id, []) if is_owned(r.source, r.tls_mode)]
        assert owned, (domain, summary)
        for row in owned:
            assert row.status == "active" or row.last_error or due_reason(row, now) is None, (domain, row, summary)


@pytest.fixture
def fuzz_settings(tmp_path, bind, pebble) -> CertSettings:
    """Short timeouts, and every HTTP-API provider pointed at a closed loopback port: a
    hostile credential must never make the test talk to the internet."""
    from tasks.certs import providers

    return cert_settings(tmp_path / "certs", bind, pebble, email="fuzz@example.test", propagation_timeout=5.0,
                         order_timeout=30.0, api_urls={kind: "http://127.0.0.1:9" for kind in providers.types()})


def test_routes_and_aliases_never_stop_sync(any_engine, bind):
    """Cheap and broad: no issuance. Every route wanting DNS-01 ends up in a group (with a
    row of its own) or named in the problems; the listing works on whatever is left."""
    from tasks.certs.listing import rows as listing

    engine = any_engine

    @budget(150)
    @given(st.data())
    def run(data):
        _reset(engine)
        specs = data.draw(route_specs(_postgres(engine), bind.port))
        hostile = _insert_hostile(engine, specs, add_provider(engine, bind.credentials))
        synced = sync_certificates(engine, int(time.time()))
        with engine.connect() as conn:
            domains = dict(conn.execute(sa.select(routes.c.id, routes.c.domain)).all())
            _, problems = plan(conn)
        grouped = {route.route_id for group in synced.groups for route in group.group.routes}
        reported = " | ".join(synced.problems.values())
        for route_id in hostile:
            domain = domains[route_id]
            shown = domain if isinstance(domain, str) else repr(domain)
            assert route_id in grouped or f"route {shown}" in reported, (domain, synced.problems)
        json.dumps(listing(engine, time.time()), default=str)

    run()


def test_certs_run_with_hostile_input(any_engine, fuzz_settings, bind):
    """End to end: the good certificate beside the hostile items is issued by Pebble."""
    engine = any_engine

    @budget(25)
    @given(st.data())
    def run(data):
        _reset(engine)
        good_provider = add_provider(engine, bind.credentials)
        add_route(engine, good := unique(), good_provider)
        hostile = _insert_hostile(engine, data.draw(route_specs(_postgres(engine), bind.port)), good_provider)
        summary = run_sweep(engine, fuzz_settings)
        _check(engine, summary, good, hostile)

    run()


@budget(400)
@given(credentials=credential_texts(53), type_=provider_types)
def test_provider_credentials_load_or_say_why(engine, credentials, type_):
    """Any stored credentials: a provider, or a CertError with a message (no other
    exception, which would read as an internal error)."""
    with write_transaction(engine) as conn:
        conn.execute(dns_providers.delete())
    provider_id = add_provider(engine, credentials, type_=type_, fmt="raw", name="fuzz")
    with engine.connect() as conn:
        try:
            build_provider(conn, provider_id, CertSettings(secret=SECRET, api_urls={}), "fuzz.example.test")
        except CertError as exc:
            assert str(exc) and "Traceback" not in str(exc)
