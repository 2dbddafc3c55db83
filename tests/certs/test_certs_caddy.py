"""Certificates reach Caddy: end to end with Debian's caddy (admin API on loopback),
Pebble and BIND 9. A certificate the workers issue is loaded and served (handshake serial
= the database's), swapped on renewal with no failed handshake, put back by `caddy-sync`
after ProxyOS replaced Caddy's configuration, and loaded once Caddy is back after being
down; Pebble's log shows one order per issuance and none from Caddy."""

from __future__ import annotations

import dataclasses
import json
import threading
import time

import pytest
import requests
import sqlalchemy as sa
from cryptography import x509

from db.schema import cert_deployments, certificates, task_runs
from tasks.certs import caddy_deploy
from tasks.certs.caddy_deploy import deploy_issued, sync_caddy
from tasks.certs.issue import Sessions, issue_certificate
from tasks.certs.listing import rows, summary
from tasks.certs.sync import sync_certificates
from tests.toolkit.factories import add_provider, add_route, unique
from tests.toolkit.processes import wait_until
from tests.toolkit.servers.caddy import dns_policy, proxyos_config, route
from tests.toolkit.servers.pebble import pebble_counts

NO_ORDER_WINDOW = 2.0  # Caddy places its order within ~10 ms of a configuration that needs one


@pytest.fixture
def fast_retries(monkeypatch):
    monkeypatch.setattr(caddy_deploy, "RETRY_DELAYS", (0.2, 0.4))


def _with_caddy(settings, caddy):
    return dataclasses.replace(settings, caddy_admin_url=caddy.admin_url)


def _new_route(engine, bind) -> tuple[str, str, str]:
    provider = add_provider(engine, bind.credentials)
    domain = unique()
    route_id = add_route(engine, domain, provider)
    sync_certificates(engine, int(time.time()))
    with engine.connect() as conn:
        cert_id = conn.execute(sa.select(certificates.c.id).where(certificates.c.domain == domain)).scalar_one()
    return domain, route_id, cert_id


def _issue(engine, settings, cert_id):
    outcome = issue_certificate(engine, settings, Sessions(engine, settings, time.time), cert_id)
    assert outcome.result in ("issued", "renewed"), outcome.error
    return outcome


def _file_serial(settings, domain) -> int:
    return x509.load_pem_x509_certificate((settings.cert_dir / domain / "fullchain.pem").read_bytes()).serial_number


def _record(engine, cert_id):
    with engine.connect() as conn:
        return conn.execute(sa.select(cert_deployments).where(cert_deployments.c.certificate_id == cert_id)).first()


def _served_serial(caddy, domain) -> int | None:
    try:
        return caddy.served(domain).serial_number
    except OSError:  # Caddy has no certificate for the name: the handshake fails
        return None


def _push_route(caddy, pebble, route_id, domain) -> None:
    """What the dashboard does for a route with tls_mode 'dns': replaceRoutes, then
    upsertTlsPolicy (ProxyOS PATCHes both)."""
    caddy.patch_routes([route(route_id, [domain])])
    response = requests.patch(f"{caddy.admin_url}/config/apps/tls/automation/policies",
                              json=[dns_policy([domain], pebble)], timeout=10)
    assert response.status_code == 200, response.text


def assert_caddy_orders_nothing(caddy, pebble, domain: str, orders_before: int) -> None:
    """Watch Caddy's log and Pebble's order count for NO_ORDER_WINDOW seconds after a
    configuration change: any order, or Caddy starting to obtain `domain`, fails."""
    deadline = time.monotonic() + NO_ORDER_WINDOW
    while time.monotonic() < deadline:
        obtaining = [line for line in caddy.log.read_text().splitlines()
                     if '"logger":"tls.obtain"' in line and domain in line]
        assert not obtaining, f"Caddy started to obtain {domain} itself: {obtaining[0][:300]}"
        assert pebble_counts(pebble)["orders"] == orders_before, "the CA received an order from Caddy"
        time.sleep(0.05)


class Handshakes:
    """A client performing TLS handshakes with Caddy in a loop, in a thread."""

    def __init__(self, caddy, domain: str) -> None:
        self.caddy, self.domain = caddy, domain
        self.serials: list[int] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.serials.append(self.caddy.served(self.domain).serial_number)
            except Exception as exc:  # noqa: BLE001 - every failure is counted
                self.failures.append(f"{type(exc).__name__}: {exc}")

    def __enter__(self) -> Handshakes:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(30)


def test_issued_certificate_is_loaded_and_served_other_entries_kept(engine, settings, bind, pebble, caddy):
    # Someone else's certificate, loaded as ProxyOS's loadCustomCert does (first PUT): it stays.
    import trustme

    other = trustme.CA().issue_cert("custom.example.test")
    custom = {"certificate": other.cert_chain_pems[0].bytes().decode(), "key": other.private_key_pem.bytes().decode()}
    put = requests.put(f"{caddy.admin_url}/config/apps/tls/certificates/load_pem", json=[custom], timeout=10)
    assert put.status_code == 200, put.text
    domain, route_id, cert_id = _new_route(engine, bind)
    orders = pebble_counts(pebble)["orders"]
    _issue(engine, settings, cert_id)  # no PROXYOS_CADDY_ADMIN_URL here: stored only
    stored = time.monotonic()
    assert deploy_issued(engine, _with_caddy(settings, caddy), cert_id) is None
    serial = wait_until(lambda: _served_serial(caddy, domain) == _file_serial(settings, domain),
                        timeout=10, what="Caddy to serve the workers' certificate") and _file_serial(settings, domain)
    first_handshake = time.monotonic() - stored
    record = _record(engine, cert_id)
    assert int(record.serial, 16) == serial == caddy.served(domain).serial_number
    assert record.deployed_at and record.pending_since is None and record.last_error is None
    assert json.loads(record.names) == [domain]
    loaded = caddy.loaded()
    assert custom in loaded and len(loaded) == 2
    custom_serial = x509.load_pem_x509_certificate(other.cert_chain_pems[0].bytes()).serial_number
    assert caddy.served("custom.example.test").serial_number == custom_serial
    # The dashboard now pushes the route and its 'dns' policy: the loaded certificate keeps Caddy out.
    _push_route(caddy, pebble, route_id, domain)
    wait_until(lambda: any("already loaded" in line and domain in line for line in caddy.log.read_text().splitlines()),
               timeout=10, what="Caddy to skip managing the name")
    assert_caddy_orders_nothing(caddy, pebble, domain, orders + 1)
    assert pebble_counts(pebble)["orders"] == orders + 1  # the workers' one order
    listed = {i["id"]: i for i in rows(engine, time.time())}[cert_id]
    assert int(listed["caddy"]["serial"], 16) == serial and listed["caddy"]["pending_since"] is None
    print(f"\nissuance to first handshake with the new certificate: {first_handshake * 1000:.0f} ms")


def test_renewal_swaps_the_certificate_with_zero_failed_handshakes(engine, settings, bind, pebble, caddy):
    settings = _with_caddy(settings, caddy)
    domain, route_id, cert_id = _new_route(engine, bind)
    orders = pebble_counts(pebble)["orders"]
    _issue(engine, settings, cert_id)
    first = _file_serial(settings, domain)
    _push_route(caddy, pebble, route_id, domain)
    assert caddy.served(domain).serial_number == first
    with Handshakes(caddy, domain) as client:
        wait_until(lambda: len(client.serials) >= 20, timeout=30, what="handshakes before the renewal")
        renewed = time.monotonic()
        assert _issue(engine, settings, cert_id).result == "renewed"
        second = _file_serial(settings, domain)
        wait_until(lambda: second in client.serials, timeout=10, what="a handshake with the renewed certificate")
        took = time.monotonic() - renewed
        seen = len(client.serials)
        wait_until(lambda: len(client.serials) >= seen + 20, timeout=30, what="handshakes after the renewal")
    assert second != first
    assert client.failures == [], client.failures[:3]
    swap = client.serials.index(second)
    assert set(client.serials[:swap]) == {first} and set(client.serials[swap:]) == {second}
    assert int(_record(engine, cert_id).serial, 16) == second
    assert_caddy_orders_nothing(caddy, pebble, domain, orders + 2)
    assert pebble_counts(pebble)["orders"] == orders + 2  # one per issuance, none from Caddy
    print(f"\nrenewal (order + load) to first handshake with the new certificate: {took * 1000:.0f} ms; "
          f"{len(client.serials)} handshakes, 0 failed")


def test_full_reload_drops_the_certificate_and_one_sync_puts_it_back(engine, settings, bind, pebble, caddy):
    settings = _with_caddy(settings, caddy)
    domain, route_id, cert_id = _new_route(engine, bind)
    orders = pebble_counts(pebble)["orders"]
    _issue(engine, settings, cert_id)
    serial = _file_serial(settings, domain)
    _push_route(caddy, pebble, route_id, domain)
    before = _record(engine, cert_id)
    # In step: a run changes nothing, in Caddy or in the database.
    etag = requests.get(f"{caddy.admin_url}/config/apps/tls/certificates/load_pem", timeout=10).text
    assert sync_caddy(engine, settings)["loaded"] == []
    assert _record(engine, cert_id) == before
    assert requests.get(f"{caddy.admin_url}/config/apps/tls/certificates/load_pem", timeout=10).text == etag
    # ProxyOS replaces the whole configuration (its base config with the setting
    # docs/proxyos.md asks for, then its routes and policies).
    reloaded = time.monotonic()
    caddy.load(proxyos_config(caddy, [route(route_id, [domain])], [dns_policy([domain], pebble)],
                              skip_certificates=[domain]))
    assert caddy.loaded() == []
    assert _served_serial(caddy, domain) is None  # skip_certificates, nothing loaded: no certificate at all
    summary_ = sync_caddy(engine, settings)  # one tick
    assert summary_["loaded"] == [domain] and summary_["failed"] == {}
    assert _served_serial(caddy, domain) == serial
    back = time.monotonic() - reloaded
    assert int(_record(engine, cert_id).serial, 16) == serial
    assert_caddy_orders_nothing(caddy, pebble, domain, orders + 1)
    print(f"\nconfiguration reload to the certificate served again (one caddy-sync run): {back * 1000:.0f} ms "
          "(+ up to one 60 s tick in a running consumer)")


def test_without_skip_certificates_a_reload_makes_caddy_order(engine, settings, bind, pebble, caddy):
    """Why docs/proxyos.md asks for `skip_certificates`: a configuration without the
    loaded certificate has Caddy order the name at once, before any sync could run.
    (Also shows the no-order check can fail.)"""
    settings = _with_caddy(settings, caddy)
    domain, route_id, cert_id = _new_route(engine, bind)
    _issue(engine, settings, cert_id)
    orders = pebble_counts(pebble)["orders"]
    caddy.load(proxyos_config(caddy, [route(route_id, [domain])], [dns_policy([domain], pebble)]))
    wait_until(lambda: pebble_counts(pebble)["orders"] > orders, timeout=10, what="Caddy's own order")
    with pytest.raises(AssertionError, match="Caddy started to obtain|order from Caddy"):
        assert_caddy_orders_nothing(caddy, pebble, domain, orders)


def test_caddy_down_during_renewal_is_loaded_on_the_first_retry(engine, settings, bind, pebble, caddy, fast_retries):
    settings = _with_caddy(settings, caddy)
    domain, route_id, cert_id = _new_route(engine, bind)
    _issue(engine, settings, cert_id)
    caddy.stop()
    outcome = _issue(engine, settings, cert_id)
    assert outcome.result == "renewed" and "not loaded into Caddy yet" in outcome.error
    assert "did not answer" in outcome.error
    renewed = _file_serial(settings, domain)
    with engine.connect() as conn:
        assert conn.execute(sa.select(certificates.c.status).where(certificates.c.id == cert_id)).scalar() == "active"
    record = _record(engine, cert_id)
    assert record.pending_since and record.failures == 1 and record.next_attempt_at > record.pending_since
    assert int(record.serial, 16) != renewed  # still the first certificate's
    waiting = summary(engine, time.time())["caddy"]["waiting"]
    assert domain in waiting and "did not answer" in waiting[domain]
    # A sync while Caddy is still down fails, recorded, and the run says why.
    with pytest.raises(Exception, match="did not answer"):
        sync_caddy(engine, settings, clock=lambda: record.next_attempt_at + 1)
    assert _record(engine, cert_id).failures == 2
    caddy.start()  # from its base configuration, as ProxyOS's container starts it: no certificates
    retry_at = _record(engine, cert_id).next_attempt_at
    assert sync_caddy(engine, settings, clock=lambda: retry_at)["loaded"] == [domain]  # the first retry
    assert caddy.served(domain).serial_number == renewed
    record = _record(engine, cert_id)
    assert int(record.serial, 16) == renewed and record.pending_since is None and record.failures == 0
    orders = pebble_counts(pebble)["orders"]
    _push_route(caddy, pebble, route_id, domain)  # the dashboard pushes its routes again
    assert_caddy_orders_nothing(caddy, pebble, domain, orders)


def test_admin_api_refusal_is_recorded_with_caddys_message(engine, settings, bind, pebble, caddy):
    settings = _with_caddy(settings, caddy)
    domain, _route_id, cert_id = _new_route(engine, bind)
    _issue(engine, settings, cert_id)
    # Another key than the certificate's: Caddy refuses the configuration.
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    wrong = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    (settings.cert_dir / domain / "privkey.pem").write_text(wrong)
    caddy.load(caddy.boot)  # drop it, so that the sync has to load it again
    result = sync_caddy(engine, settings)
    message = result["failed"][domain]
    assert "HTTP 4" in message or "HTTP 5" in message
    assert message.endswith("tls: private key does not match public key"), message
    record = _record(engine, cert_id)
    assert record.last_error == message and record.pending_since and record.next_attempt_at
    body = "".join(wrong.splitlines()[1:-1])
    for text in (message, json.dumps(result)):
        assert "PRIVATE KEY" not in text and body[:40] not in text and len(message) < 500
    # In back-off: the next run does not send it again.
    assert sync_caddy(engine, settings)["waiting"] == [domain]


def test_concurrent_writer_is_not_lost(engine, settings, bind, pebble, caddy):
    """Between our read and our write another writer adds an entry: Caddy answers 412 to
    our stale If-Match, and the retry keeps the other writer's entry."""
    import trustme

    from tasks.certs import caddy_load
    from tasks.certs.caddy_admin import AdminClient

    settings = _with_caddy(settings, caddy)
    domain, _route_id, cert_id = _new_route(engine, bind)
    _issue(engine, settings, cert_id)
    other = trustme.CA().issue_cert("other.example.test")
    entry = {"certificate": other.cert_chain_pems[0].bytes().decode(), "key": other.private_key_pem.bytes().decode()}
    client = AdminClient(caddy.admin_url)
    stale = caddy_load.read(client)
    requests.post(f"{caddy.admin_url}/config/apps/tls/certificates/load_pem", json=entry, timeout=10).raise_for_status()
    with pytest.raises(caddy_load.Conflict):
        caddy_load.write(client, stale, [])
    pem = caddy_deploy.deployable(engine, settings, time.time()).pems[0]
    caddy_load.update(client, caddy_load.replace_plan([pem]))
    loaded = caddy.loaded()
    assert entry in loaded and len(loaded) == 2


def test_etag_is_caddys(caddy):
    """The ETag the client computes is the one Caddy sends in its trailer."""
    import socket

    from tasks.certs.caddy_admin import etag

    path = "/config/apps"
    with socket.create_connection(("127.0.0.1", caddy.admin_port), timeout=5) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{caddy.admin_port}\r\nConnection: close\r\n\r\n".encode())
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    body = requests.get(caddy.admin_url + path, timeout=5).content
    assert f"Etag: {etag(path, body)}".encode() in raw, raw[-200:]


def test_unix_socket_admin_url(tmp_path, caddy):
    from tasks.certs.caddy_admin import AdminClient

    sock = tmp_path / "admin.sock"
    config = dict(caddy.boot, admin={"listen": f"unix/{sock}"})
    requests.post(f"{caddy.admin_url}/load", json=config, timeout=10)  # the admin endpoint moves
    wait_until(sock.exists, timeout=10, what="the admin socket")
    client = AdminClient(f"unix/{sock}")
    assert client.request("GET", "/config/admin").json() == {"listen": f"unix/{sock}"}
    caddy.stop()


def test_sync_job_through_the_cli_and_status(cert_env, engine, caddy, cli, bind):
    env = dict(cert_env, PROXYOS_CADDY_ADMIN_URL=caddy.admin_url)
    domain, _route_id, cert_id = _new_route(engine, bind)
    result = cli(["run-once", "issue", "--cert", cert_id], env)
    assert result.returncode == 0, result.stderr
    caddy.load(caddy.boot)
    result = cli(["run-once", "caddy-sync"], env)
    assert result.returncode == 0, result.stderr
    assert f"loaded: {domain}" in result.stdout
    listed = cli(["certs"], env)
    assert "IN CADDY" in listed.stdout and "serial" in listed.stdout
    status = cli(["status", "--json"], env)
    report = json.loads(status.stdout)
    assert any(j["job"] == "caddy-sync" and j["every_s"] == 60 for j in report["jobs"])
    assert report["certs"]["caddy"]["loaded"] == 1
    with engine.connect() as conn:
        runs = conn.execute(sa.select(task_runs.c.job, task_runs.c.status).where(task_runs.c.job == "caddy-sync")).all()
    assert runs == [("caddy-sync", "ok")]
    bad = cli(["run-once", "caddy-sync"], dict(env, PROXYOS_CADDY_ADMIN_URL="https://x"))
    assert bad.returncode == 2 and "PROXYOS_CADDY_ADMIN_URL" in bad.stderr and "Traceback" not in bad.stderr


def test_one_sweep_loads_every_certificate_and_a_bad_one_keeps_no_other_out(any_engine, settings, bind, pebble,
                                                                            caddy):
    """Three certificates issued at once (their loads race: If-Match sorts them out), on
    SQLite and PostgreSQL; after a reload one with a broken key pair is refused alone;
    a route leaving tls_mode dns has its entry removed."""
    from tasks.certs.sweep import run_sweep

    engine = any_engine
    settings = dataclasses.replace(_with_caddy(settings, caddy), concurrency=3)
    provider = add_provider(engine, bind.credentials)
    domains = [unique() for _ in range(3)]
    route_ids = [add_route(engine, domain, provider) for domain in domains]
    result = run_sweep(engine, settings)
    assert result.get("issued") == 3 and all("error" not in c for c in result["certificates"]), result
    assert len(caddy.loaded()) == 3
    for domain in domains:
        assert caddy.served(domain).serial_number == _file_serial(settings, domain)
    with engine.connect() as conn:
        recorded = conn.execute(sa.select(cert_deployments)).all()
    assert len(recorded) == 3 and all(r.pending_since is None and r.serial for r in recorded)
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    (settings.cert_dir / domains[0] / "privkey.pem").write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    caddy.load(caddy.boot)
    synced = sync_caddy(engine, settings)
    assert synced["loaded"] == sorted(domains[1:]) and list(synced["failed"]) == [domains[0]], json.dumps(synced)
    assert _served_serial(caddy, domains[0]) is None
    with engine.connect() as conn:
        from db.schema import routes

        conn.execute(routes.update().where(routes.c.id == route_ids[1]).values(tls_mode="auto"))
        conn.commit()
    synced = sync_caddy(engine, settings)
    assert synced["removed"] == 1 and synced["waiting"] == [domains[0]], synced
    kept = _cert_id(engine, domains[2])
    assert [e["tags"] for e in caddy.loaded()] == [["proxyos-workers", f"proxyos-workers:{kept}"]]


def _cert_id(engine, domain) -> str:
    with engine.connect() as conn:
        return conn.execute(sa.select(certificates.c.id).where(certificates.c.domain == domain)).scalar_one()


def test_a_request_in_flight_during_the_swap_is_answered(engine, settings, bind, pebble, caddy):
    """A request Caddy is proxying while the renewed certificate is loaded gets its answer
    on the same connection (the upstream answers only once the swap is done)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    arrived, swapped = threading.Event(), threading.Event()

    class Upstream(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            arrived.set()
            swapped.wait(30)
            self.send_response(200)
            self.send_header("Content-Length", "4")
            self.end_headers()
            self.wfile.write(b"done")

        def log_message(self, *args) -> None:
            pass

    upstream = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    try:
        settings = _with_caddy(settings, caddy)
        domain, route_id, cert_id = _new_route(engine, bind)
        _issue(engine, settings, cert_id)
        caddy.patch_routes([{"@id": f"proxyos-route-{route_id}", "match": [{"host": [domain]}], "handle": [
            {"handler": "reverse_proxy", "upstreams": [{"dial": f"127.0.0.1:{upstream.server_address[1]}"}]}]}])
        import socket
        import ssl

        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        with socket.create_connection(("127.0.0.1", caddy.https_port), timeout=30) as raw, \
                context.wrap_socket(raw, server_hostname=domain) as tls:
            first = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)).serial_number
            tls.sendall(f"GET / HTTP/1.1\r\nHost: {domain}\r\nConnection: close\r\n\r\n".encode())
            assert arrived.wait(30)
            assert _issue(engine, settings, cert_id).result == "renewed"
            renewed = _file_serial(settings, domain)
            assert _served_serial(caddy, domain) == renewed != first  # the swap is done
            swapped.set()
            answer = b""
            while chunk := tls.recv(4096):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"done"), answer[:200]
    finally:
        swapped.set()
        upstream.shutdown()


def test_etag_header_of_newer_caddy_is_used_as_sent():
    """Caddy >= 2.8 sends its ETag (an xxhash) as a header: used as it is, not computed."""
    from tasks.certs.caddy_admin import Response, etag
    from tasks.certs.caddy_load import LOAD_PEM, _etag

    assert _etag(Response(200, b"[]\n", f'"{LOAD_PEM} 1a2b3c4d5e6f7081"')) == f'"{LOAD_PEM} 1a2b3c4d5e6f7081"'
    assert _etag(Response(200, b"[]\n")) == etag(LOAD_PEM, b"[]\n")


@pytest.mark.parametrize(("url", "accepted"), [
    ("http://127.0.0.1:2019", ("127.0.0.1", 2019)), ("http://localhost:2019/", ("localhost", 2019)),
    ("unix//run/caddy/admin.sock", ("unix", "/run/caddy/admin.sock")), ("https://127.0.0.1:2019", None),
    ("http://admin:pw@127.0.0.1:2019", None), ("http://127.0.0.1:2019/config/", None), ("unix//", None),
    ("127.0.0.1:2019", None), ("http://127.0.0.1:99999", None),
])
def test_admin_url_forms(url, accepted):
    from tasks.certs.caddy_admin import parse_admin_url

    if accepted is None:
        with pytest.raises(ValueError):
            parse_admin_url(url)
    else:
        assert parse_admin_url(url) == accepted


def test_a_dns_policy_without_a_route_orders_nothing(caddy, pebble):
    """The automation policy alone starts no management: only a route's host does."""
    domain = unique()
    orders = pebble_counts(pebble)["orders"]
    response = requests.patch(f"{caddy.admin_url}/config/apps/tls/automation/policies",
                              json=[dns_policy([domain], pebble)], timeout=10)
    assert response.status_code == 200, response.text
    assert_caddy_orders_nothing(caddy, pebble, domain, orders)


def test_skip_certificates_matches_names_exactly(caddy, pebble):
    """`*.example.test` in skip_certificates does not cover t....example.test: Caddy orders it."""
    domain = unique()
    orders = pebble_counts(pebble)["orders"]
    caddy.load(proxyos_config(caddy, [route("r", [domain])], [dns_policy([domain], pebble)],
                              skip_certificates=["*.example.test"]))
    wait_until(lambda: pebble_counts(pebble)["orders"] > orders, timeout=10, what="Caddy's own order")


def test_a_periodic_sync_in_step_leaves_no_run_row(cert_env, engine, settings, bind, caddy, tmp_path):
    """A tick that loads something is recorded; a tick that finds Caddy in step is not
    (a quiet idle), and neither is one without PROXYOS_CADDY_ADMIN_URL."""
    from tests.toolkit.jobs import job_runs
    from workers import config
    from workers.registry import JobContext, discover
    from workers.runner import run_job

    settings = _with_caddy(settings, caddy)
    domain, _route_id, cert_id = _new_route(engine, bind)
    _issue(engine, settings, cert_id)
    caddy.load(caddy.boot)
    job = discover()["caddy-sync"]
    for env in (dict(cert_env, PROXYOS_CADDY_ADMIN_URL=caddy.admin_url), cert_env):
        ctx = JobContext(config.load(env), buffered_history=True)
        try:
            for _ in range(2):
                run_job(ctx, job, quiet_when_idle=True)
        finally:
            ctx.close()
    runs = job_runs(engine, "caddy-sync")
    assert [(r["status"], json.loads(r["summary"])["loaded"]) for r in runs] == [("ok", [domain])]
    assert caddy.served(domain).serial_number == _file_serial(settings, domain)
