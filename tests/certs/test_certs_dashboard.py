"""The workers beside the dashboard: rows the dashboard writes (its `syncFromRoutes`,
transcribed in dashboard.py) are read without a crash, rows the workers do not own are
never written, and the dashboard's list stays right and stable across runs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography import x509

from db.engine import create_engine, write_transaction
from db.migrate import upgrade
from db.schema import cert_issuance_log, certificates
from tasks.certs import policy
from tasks.certs.names import RouteNames, acme_name, group_routes
from tasks.certs.sweep import run_sweep
from tests.toolkit.factories import add_certificate, add_provider, add_route, unique
from tests.toolkit.processes import run_cli
from tests.toolkit.servers.pebble import pebble_counts

from .dashboard import list_certificates, sync_from_routes, upload_custom
from .foreign_rows import caddy_certificate, clear_foreign_writes, foreign_writes, install_triggers, snapshot

DAY = 86400


def _rows(engine, **where) -> list:
    query = sa.select(certificates).order_by(certificates.c.created_at, certificates.c.id)
    for key, value in where.items():
        query = query.where(certificates.c[key] == value)
    with engine.connect() as conn:
        return conn.execute(query).all()


def _created_later(engine, domain: str, seconds: int = 1) -> None:
    """Routes created in the same second: make the order (which route leads) certain."""
    with write_transaction(engine) as conn:
        conn.execute(sa.text("UPDATE routes SET created_at = created_at + :s WHERE domain = :d"),
                     {"s": seconds, "d": domain})


def _san(path: Path) -> set[str]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
               .get_values_for_type(x509.DNSName))


def test_acme_names_and_groups():
    assert acme_name(" WWW.Example.COM. ") == "www.example.com"
    assert acme_name("*.Bücher.example") == "*.xn--bcher-kva.example"
    for bad in ("a b.example", "x.*.example", "a..example", "", "."):
        with pytest.raises(ValueError):
            acme_name(bad)

    def route(i, domain, *aliases):
        return RouteNames(str(i), domain, tuple(acme_name(n) for n in (domain, *aliases)), (i, str(i)))

    groups = group_routes([
        route(1, "Example.com"), route(2, "example.com."),            # same name
        route(3, "a.example", "b.example"), route(4, "b.example", "A.example"),  # same set
        route(5, "c.example", "d.example"), route(6, "C.example"),    # same folder, more names
        route(7, "e.example"),
    ])
    assert [[r.domain for r in g.routes] for g in groups] == [
        ["Example.com", "example.com."], ["a.example", "b.example"], ["c.example", "C.example"], ["e.example"]]
    assert [g.names for g in groups] == [
        ("example.com",), ("a.example", "b.example"), ("c.example", "d.example"), ("e.example",)]


def test_an_active_row_without_worker_columns_is_due_not_a_crash():
    class Row:
        lease_owner = lease_expires_at = next_attempt_at = renew_at = None
        status, auto_renew = "active", 1
        issued_at, expires_at = 0, 90 * DAY

    assert policy.due_reason(Row, now=61 * DAY) == "renewal"
    assert policy.due_reason(Row, now=59 * DAY) is None
    Row.issued_at = Row.expires_at = None
    assert policy.due_reason(Row, now=0) == "renewal"


def test_every_command_on_dashboard_rows(cert_env, bind, pebble, tmp_path):
    """Rows as the dashboard writes them: every certs job and command succeeds, and not
    one statement of the workers changes a row that is not theirs."""
    engine = create_engine(cert_env["PROXYOS_DATABASE_URL"])
    upgrade(engine)
    install_triggers(engine)
    caddy = tmp_path / "caddy"
    now = int(time.time())
    provider = add_provider(engine, bind.credentials)
    capital = unique().capitalize().replace(".example.test", ".Example.TEST")
    add_route(engine, capital, provider)
    caddy_had = unique()  # tls dns, but Caddy had a certificate: the dashboard marks it active
    add_route(engine, caddy_had, provider)
    caddy_certificate(caddy, caddy_had, now - 80 * DAY, now + 10 * DAY)
    lead, member = unique(), None
    add_route(engine, lead.upper(), provider)
    add_route(engine, member := lead + ".", provider)
    _created_later(engine, member)
    auto = unique()  # Caddy's own, expired a day ago
    add_route(engine, auto, None, tls_mode="auto")
    caddy_certificate(caddy, auto, now - 91 * DAY, now - DAY)
    add_route(engine, internal := unique(), None, tls_mode="internal")
    switched = unique()  # was `auto`, now `dns`: its row is still acme_le until the dashboard syncs
    add_route(engine, switched, None, tls_mode="auto")
    sync_from_routes(engine, now, caddy)
    with write_transaction(engine) as conn:
        conn.execute(sa.text("UPDATE routes SET tls_mode = 'dns', tls_dns_provider_id = :p WHERE domain = :d"),
                     {"p": provider, "d": switched})
    custom_id = upload_custom(engine, unique(), now - 100 * DAY, now - 5 * DAY, now)
    # a worker row whose route was deleted, expired
    add_certificate(engine, unique(), status="active", issued_at=now - 100 * DAY, expires_at=now - DAY,
                    last_renewed_at=now - 100 * DAY, route_id="gone", created_at=now)
    rows = {r.domain: r for r in _rows(engine)}
    assert rows[caddy_had].status == "active" and rows[caddy_had].renew_at is None
    assert rows[capital].status == "provisioning" and rows[capital].names is None
    assert rows[auto].source == "acme_le" and rows[internal].source == "internal"
    theirs = snapshot(engine)
    assert len(theirs) == 5  # auto, internal, switched (acme_le), custom, orphan

    def run(*args, code=0):
        clear_foreign_writes(engine)
        result = run_cli(list(args), cert_env)
        assert result.returncode == code, (args, result.stdout, result.stderr)
        assert foreign_writes(engine) == [], args
        assert snapshot(engine) == theirs, args
        return result

    before = pebble_counts(pebble)
    issued = json.loads(run("run-once", "issue", "--domain", member, "--json").stdout)["summary"]
    assert issued["result"] == "issued" and issued["domain"] == lead.upper()
    run("run-once", "issue", "--cert", rows[capital].id)
    run("run-once", "issue", "--domain", capital.lower())  # another spelling: the same row
    certs = run("run-once", "certs", "--json")
    summary = json.loads(certs.stdout)["summary"]
    assert "failed" not in summary and summary.get("renewed") == 1, summary  # caddy_had's, by us now
    assert any(switched in p and "not the workers'" in p for p in summary["route_problems"])
    refused = run("run-once", "issue", "--cert", custom_id, code=1)
    assert "managed by ProxyOS (uploaded)" in refused.stdout
    run("run-once", "issue", "--domain", auto, code=1)
    listing = run("certs")
    assert "Caddy (ProxyOS)" in listing.stdout and "not by the workers" in listing.stdout
    items = {i["domain"]: i for i in json.loads(run("certs", "--json").stdout)}
    run("status")
    run("status", "--json")

    for domain in (capital, caddy_had, lead.upper(), member):
        assert items[domain]["status"] == "active" and items[domain]["managed_by"] == "workers", domain
    assert items[member]["shares_certificate_of"] == lead.upper()
    for domain in (auto, internal, switched):
        assert items[domain]["managed_by"] == "Caddy (ProxyOS)" and items[domain]["next_renewal_at"] is None
    assert items[auto]["status"] == "active"  # past its expiry, but Caddy's to judge
    assert len([r for r in _rows(engine) if r.domain == switched]) == 1
    mine = {r.domain: r for r in _rows(engine, source="dns01") if r.route_id != "gone"}
    assert set(mine) == {capital, caddy_had, lead.upper(), member}
    assert all(r.last_renewed_at for r in mine.values())
    # One order per certificate: the pair shares one; the capitalised one was re-issued on request.
    assert pebble_counts(pebble)["issued"] - before["issued"] == 4
    folders = sorted(p.name for p in (tmp_path / "certs").iterdir() if not p.name.startswith("."))
    assert folders == sorted({capital.lower(), caddy_had, lead})
    assert _san(tmp_path / "certs" / lead / "fullchain.pem") == {lead}
    with engine.connect() as conn:
        logged = conn.execute(sa.select(cert_issuance_log.c.domain, cert_issuance_log.c.registered_domain)).all()
    assert {d for d, _ in logged} == {capital.lower(), caddy_had, lead}
    assert {r for _, r in logged} == {"example.test"}  # `test` is a suffix of the shipped list
    engine.dispose()


def _sync_then_workers(engine, settings, caddy: Path) -> tuple[list[dict], object, dict]:
    """The dashboard's list, then a `certs` run, which leaves every row not its own as it was."""
    rows, dashboard = list_certificates(engine, int(time.time()), caddy)
    theirs = snapshot(engine)
    summary = run_sweep(engine, settings)
    assert snapshot(engine) == theirs
    return rows, dashboard, summary


def test_dashboard_list_is_right_and_stable(any_engine, settings, bind, pebble, tmp_path):
    engine, caddy = any_engine, tmp_path / "caddy"
    provider = add_provider(engine, bind.credentials)
    now = int(time.time())
    capital = unique().upper()
    add_route(engine, capital, provider)
    same = unique()
    add_route(engine, same.capitalize(), provider)
    add_route(engine, same + ".", provider)
    a, b = unique(), unique()
    add_route(engine, a, provider, aliases=[b])
    add_route(engine, b.upper(), provider, aliases=[a + "."])
    _created_later(engine, b.upper())
    old = unique()  # issued by an earlier version of the workers, which stored it lower-cased
    add_route(engine, old.capitalize(), provider)
    add_route(engine, auto := unique(), None, tls_mode="auto")
    add_route(engine, unique(), None, tls_mode="off")
    with engine.connect() as conn:
        old_route = conn.execute(sa.text("SELECT id FROM routes WHERE domain = :d"),
                                 {"d": old.capitalize()}).scalar()
    legacy_id = add_certificate(
        engine, old, status="active", issued_at=now - 10 * DAY, expires_at=now + 80 * DAY, renew_at=now + 50 * DAY,
        last_renewed_at=now - 10 * DAY, names=json.dumps([old]), route_id=old_route, created_at=now - 10 * DAY)
    with engine.connect() as conn:
        routes = {r.domain: r.tls_mode for r in conn.execute(sa.text("SELECT domain, tls_mode FROM routes"))}

    counts = pebble_counts(pebble)
    rows, dashboard, summary = _sync_then_workers(engine, settings, caddy)
    assert sorted(dashboard.inserted) == sorted(d for d, m in routes.items() if m != "off")
    assert summary["created"] == 0 and summary.get("issued") == 3, summary  # capital, same, a/b
    assert summary["merged"] == [f"{old} -> {old.capitalize()}"]
    assert len(snapshot(engine)) == 1  # the `auto` route's row
    for _ in range(3):
        rows, dashboard, summary = _sync_then_workers(engine, settings, caddy)
        assert dashboard.inserted == [] and dashboard.deleted == []
        assert summary["created"] == 0 and summary["merged"] == [] and summary["due"] == 0, summary
    rows, dashboard = list_certificates(engine, int(time.time()), caddy)
    assert dashboard.inserted == [] and dashboard.deleted == []
    assert pebble_counts(pebble)["issued"] - counts["issued"] == 3

    # The dashboard's list: one row per route (tls_mode not off), by the route's domain.
    assert sorted(r["domain"] for r in rows) == sorted(d for d, m in routes.items() if m != "off")
    by_domain = {r["domain"]: r for r in rows}
    for domain, mode in routes.items():
        if mode == "dns":
            row = by_domain[domain]
            assert row["source"] == "dns01" and row["status"] == "active", row
            assert row["expires_at"] > now + 30 * DAY and row["last_renewed_at"], row
    assert by_domain[auto]["source"] == "acme_le" and by_domain[auto]["status"] == "provisioning"
    assert by_domain[same.capitalize()]["expires_at"] == by_domain[same + "."]["expires_at"]
    assert by_domain[a]["expires_at"] == by_domain[b.upper()]["expires_at"]
    assert legacy_id not in {r["id"] for r in rows}
    assert by_domain[old.capitalize()]["last_renewed_at"] == now - 10 * DAY  # adopted, not re-ordered
    folders = {p.name: _san(p / "fullchain.pem") for p in settings.cert_dir.iterdir()
               if not p.name.startswith(".")}
    assert folders == {capital.lower(): {capital.lower()}, same: {same}, a: {a, b}}
