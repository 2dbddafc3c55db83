"""Secrets in every form they take when serialized stay masked, in real JSON log lines,
in `task_runs` (summary and error) and in recorded errors; a PowerDNS `api_url` with
`user:pass@` is never shown."""

from __future__ import annotations

import json
import logging
import urllib.parse

import pytest
import sqlalchemy as sa

from db.engine import create_engine
from db.migrate import upgrade
from db.schema import audit_log, certificates, task_runs
from tasks.redaction import MASK, redact, remember
from tests.toolkit.factories import add_provider, add_route, unique
from tests.toolkit.jobs import job_context
from tests.toolkit.processes import run_cli
from workers import logs
from workers.registry import Job
from workers.runner import run_job

HOSTILE = [
    'pässwörd-"quoted"-\\back\\slash',
    "🔑-emoji-and-ü-secret",
    "new\nline\ttab-secret",
    "only'single\"double-quotes",
    "trailing-backslash\\",
]


def forms(secret: str) -> list[str]:
    """How a secret looks once serialized: raw, JSON (escaped or not), JSON inside JSON,
    Python's repr, percent-encoded."""
    found = {secret, repr(secret)[1:-1], urllib.parse.quote(secret, safe="")}
    for ensure_ascii in (True, False):
        once = json.dumps(secret, ensure_ascii=ensure_ascii)[1:-1]
        found |= {once, json.dumps(once, ensure_ascii=ensure_ascii)[1:-1]}
    return sorted(found)


def assert_clean(text: str, secrets: list[str]) -> None:
    for secret in secrets:
        for form in forms(secret):
            assert form not in text, f"{form!r} (a form of a secret) in {text[:300]!r}"


@pytest.mark.parametrize("secret", HOSTILE)
def test_redact_masks_every_serialized_form(secret):
    remember(secret)
    for form in forms(secret):
        assert redact(f"before {form} after") == f"before {MASK} after"
    for ensure_ascii in (True, False):
        text = json.dumps({"a": secret, "b": [f"x{secret}y"]}, ensure_ascii=ensure_ascii)
        masked = redact(text)
        assert json.loads(masked) == {"a": MASK, "b": [f"x{MASK}y"]}  # still valid JSON


def test_json_log_lines_and_task_runs_mask_hostile_secrets(engine, sqlite_url, tmp_path, capsys):
    remember(*HOSTILE)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    quietened = {name: logging.getLogger(name).level for name in ("acme.client", "alembic")}
    logs.configure(logging.INFO, "json")
    log = logging.getLogger("proxyos.test.secrets")

    def leaky(_ctx, _options):
        for secret in HOSTILE:
            log.warning("provider said %s", secret)
            log.info("as repr %r, as JSON %s", secret, json.dumps({"v": secret}))
        try:
            raise ValueError(f"bad value {HOSTILE[0]!r}")
        except ValueError:
            log.exception("failed")
        return {"error": HOSTILE[0], "nested": {"list": HOSTILE}, "repr": repr(HOSTILE[2])}

    def failing(_ctx, _options):
        raise RuntimeError(f"cannot use {HOSTILE[1]} or {HOSTILE[0]!r}")

    ctx = job_context(sqlite_url, tmp_path)
    try:
        assert run_job(ctx, Job("leaky", "", run=leaky)).status == "ok"
        assert run_job(ctx, Job("failing", "", run=failing)).status == "error"
    finally:  # leave logging as the next test expects it
        root.handlers[:], level = saved
        root.setLevel(level)
        for name, level in quietened.items():
            logging.getLogger(name).setLevel(level)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) >= 2 * len(HOSTILE) + 2
    for line in lines:
        entry = json.loads(line)  # each line is one valid JSON object
        assert_clean(line, HOSTILE)
        assert_clean(json.dumps(entry, ensure_ascii=False), HOSTILE)
    with engine.connect() as conn:
        runs = conn.execute(sa.select(task_runs.c.summary, task_runs.c.error)).all()
    assert len(runs) == 2
    for summary, error in runs:
        assert_clean(f"{summary} {error}", HOSTILE)
        if summary:
            assert_clean(json.dumps(json.loads(summary), ensure_ascii=False), HOSTILE)


def test_powerdns_api_url_credentials_never_shown(cert_env, bind):
    """A PowerDNS `api_url` with user:pass@ (not reachable here): the error names the
    server without them, in the row, the audit log, task_runs and the JSON log lines."""
    password = 'pä"ss\\wörd-42'
    url = f"http://alice-admin:{urllib.parse.quote(password, safe='')}@127.0.0.1:9/api/v1"
    engine = create_engine(cert_env["PROXYOS_DATABASE_URL"])
    upgrade(engine)
    provider = add_provider(engine, {"api_url": url, "api_key": "pdns-key-0123456789"}, type_="powerdns",
                            name="pdns")
    add_route(engine, domain := unique(), provider)
    env = dict(cert_env, PROXYOS_LOG_FORMAT="json", LOG_LEVEL="debug")
    result = run_cli(["run-once", "certs", "--json"], env)
    assert result.returncode == 0, result.stderr
    with engine.connect() as conn:
        row = conn.execute(sa.select(certificates).where(certificates.c.domain == domain)).one()
        recorded = conn.execute(sa.select(task_runs.c.summary, task_runs.c.error)).all()
        audits = conn.execute(sa.select(audit_log.c.detail)).all()
    engine.dispose()
    assert row.status == "error" and "http://127.0.0.1:9" in row.last_error, row.last_error
    everything = "\n".join([row.last_error, result.stdout, result.stderr, json.dumps([list(r) for r in recorded]),
                            json.dumps([list(r) for r in audits])])
    for line in result.stderr.splitlines():
        json.loads(line)
    assert "alice-admin" not in everything
    assert_clean(everything, [password, urllib.parse.quote(password, safe="")])


def test_api_url_userinfo_becomes_basic_auth():
    from tasks.certs import providers

    provider = providers.get("powerdns")(
        {"api_url": "https://bob:s%40fe-pass-1@pdns.example.test:8081/api/v1", "api_key": "pdns-key-0123456789"},
        name="pdns")
    assert provider.api_url == "https://pdns.example.test:8081"
    assert provider.session.auth == ("bob", "s@fe-pass-1")
    assert redact("said s@fe-pass-1 and s%40fe-pass-1") == f"said {MASK} and {MASK}"


def _key_forms(pem: str) -> list[str]:
    """A private key as it could leak: the PEM, JSON-escaped, and each base64 line."""
    lines = [line for line in pem.splitlines() if line and not line.startswith("-----")]
    return [pem, json.dumps(pem)[1:-1], "".join(lines), *lines]


def test_private_key_goes_only_to_caddy(cert_env, engine, bind, caddy, tmp_path):
    """Deploying to Caddy (loaded, refused, unreachable): the certificate's private key
    is in no log line (JSON, debug), output, task_runs, audit row or recorded error."""
    from db.schema import cert_deployments
    from tests.toolkit.processes import free_port

    env = dict(cert_env, PROXYOS_CADDY_ADMIN_URL=caddy.admin_url, PROXYOS_LOG_FORMAT="json", LOG_LEVEL="debug")
    provider = add_provider(engine, bind.credentials)
    add_route(engine, domain := unique(), provider)
    outputs = [run_cli(["run-once", "issue", "--domain", domain, "--json"], env)]
    assert outputs[0].returncode == 0, outputs[0].stderr
    key_path = tmp_path / "certs" / domain / "privkey.pem"
    key = key_path.read_text()
    assert caddy.loaded() and caddy.loaded()[0]["key"] == key  # it did go to Caddy
    caddy.load(caddy.boot)
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    wrong = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    key_path.write_text(wrong)  # Caddy refuses this pair, with an error about the key
    outputs.append(run_cli(["run-once", "caddy-sync", "--json"], env))
    outputs.append(run_cli(["run-once", "caddy-sync", "--json"],
                           dict(env, PROXYOS_CADDY_ADMIN_URL=f"http://127.0.0.1:{free_port()}")))
    outputs.append(run_cli(["certs", "--json"], env))
    outputs.append(run_cli(["status", "--json"], env))
    with engine.connect() as conn:
        recorded = conn.execute(sa.select(task_runs.c.summary, task_runs.c.error)).all()
        audits = conn.execute(sa.select(audit_log.c.detail)).all()
        deployments = conn.execute(sa.select(cert_deployments)).all()
        errors = conn.execute(sa.select(certificates.c.last_error)).all()
    assert "does not match" in deployments[0].last_error
    everything = "\n".join([*(o.stdout + o.stderr for o in outputs), json.dumps([list(r) for r in recorded]),
                            json.dumps([list(r) for r in audits]), json.dumps([list(r) for r in deployments]),
                            json.dumps([list(r) for r in errors])])
    assert "PRIVATE KEY" not in everything
    for form in _key_forms(key) + _key_forms(wrong):
        assert form not in everything, form[:40]
