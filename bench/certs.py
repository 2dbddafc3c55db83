"""Benchmark: N certificates through ACME DNS-01, this project's worker vs Debian's lego.

Both run against the same Pebble and BIND 9 (started here on loopback): the worker's
`certs` sweep issues N certificates concurrently with active propagation checks; lego
(its `rfc2136` provider) issues the same N names one after another, as a user would
script it. Then one more certificate each, for single-certificate latency.

    /tmp/venv/bin/python -m bench.certs [-n 20] [--concurrency 10]

Prints the figures and one JSON line. Figures on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from db.engine import create_engine
from db.migrate import upgrade
from tasks.certs.issue import Sessions, issue_certificate
from tasks.certs.settings import CertSettings
from tasks.certs.sweep import run_sweep
from tasks.certs.sync import sync_certificates
from tests.toolkit.factories import SECRET, add_provider, add_route
from tests.toolkit.servers.bind import TSIG_NAME, start_bind
from tests.toolkit.servers.pebble import start_pebble  # the tests' Pebble and BIND

ROOT = Path(__file__).resolve().parent.parent


def lego_run(lego: str, env: dict, directory: str, resolver_port: int, path: Path, domain: str) -> float:
    started = time.perf_counter()
    result = subprocess.run(
        [lego, "--server", directory, "--email", "bench@example.test", "--accept-tos", "--dns", "rfc2136",
         "--dns.resolvers", f"127.0.0.1:{resolver_port}", "--dns.disable-cp", "--key-type", "ec256",
         "--path", str(path), "--domains", domain, "run"],
        env=env, capture_output=True, text=True, timeout=600,
    )
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"lego failed for {domain}:\n{result.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20, help="certificates per client (default 20)")
    parser.add_argument("--concurrency", type=int, default=4,
                        help="the worker's PROXYOS_CERT_CONCURRENCY (default 4, as shipped)")
    args = parser.parse_args()
    lego = shutil.which("lego")
    if not lego:
        raise SystemExit("lego is not installed (apt-get install lego)")
    work = Path(tempfile.mkdtemp(prefix="bench-certs-"))
    bind = start_bind(work / "bind")
    pebble = start_pebble(work / "pebble", bind.resolver_port)
    try:
        run_id = secrets.token_hex(3)
        engine = create_engine(f"sqlite:///{work / 'proxyos.db'}")
        upgrade(engine)
        settings = CertSettings(
            directory=pebble.directory, email="bench@example.test", ca_bundle=str(pebble.ca_bundle),
            cert_dir=work / "certs", resolvers=(("127.0.0.1", bind.port),), nameserver_port=bind.port,
            secret=SECRET, concurrency=args.concurrency,
        )
        provider = add_provider(engine, bind.credentials)
        ours = [f"w{i}-{run_id}.example.test" for i in range(args.n)]
        for name in ours:
            add_route(engine, name, provider)

        started = time.perf_counter()
        summary = run_sweep(engine, settings)
        ours_wall = time.perf_counter() - started
        if summary.get("issued") != args.n:
            raise SystemExit(f"the worker issued {summary.get('issued')} of {args.n}: {summary}")

        single = f"ws-{run_id}.example.test"
        add_route(engine, single, provider)
        sync_certificates(engine, int(time.time()))
        with engine.connect() as conn:
            cert_id = conn.exec_driver_sql("SELECT id FROM certificates WHERE domain = ?", (single,)).scalar()
        started = time.perf_counter()
        outcome = issue_certificate(engine, settings, Sessions(engine, settings, time.time), cert_id)
        ours_single = time.perf_counter() - started
        if outcome.result != "issued":
            raise SystemExit(f"single issuance failed: {outcome.error}")

        # The same as a user runs it: a new process, `proxyos-worker run-once issue`.
        cli_single_name = f"wc-{run_id}.example.test"
        add_route(engine, cli_single_name, provider)
        cli_env = {k: v for k, v in os.environ.items() if not k.startswith("PROXYOS_")}
        cli_env.update(
            PROXYOS_DATABASE_URL=f"sqlite:///{work / 'proxyos.db'}", PROXYOS_QUEUE_URL=f"sqlite:///{work / 'q.db'}",
            PROXYOS_ACME_DIRECTORY=pebble.directory, PROXYOS_ACME_CA_BUNDLE=str(pebble.ca_bundle),
            PROXYOS_ACME_EMAIL="bench@example.test", PROXYOS_CERT_DIR=str(work / "certs"),
            PROXYOS_DNS_RESOLVERS=f"127.0.0.1:{bind.port}", PROXYOS_DNS_NAMESERVER_PORT=str(bind.port),
            PROXYOS_SECRET=SECRET, LOG_LEVEL="warning",
        )
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "workers.cli", "run-once", "issue", "--domain", cli_single_name],
                              env=cli_env, capture_output=True, text=True, cwd=ROOT, timeout=300)
        ours_cli_single = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"run-once issue failed:\n{done.stdout}{done.stderr}")

        env = dict(os.environ, LEGO_CA_CERTIFICATES=str(pebble.ca_bundle),
                   RFC2136_NAMESERVER=f"127.0.0.1:{bind.port}", RFC2136_TSIG_KEY=TSIG_NAME,
                   RFC2136_TSIG_SECRET=bind.tsig_secret, RFC2136_TSIG_ALGORITHM="hmac-sha256.")
        lego_path = work / "lego"
        lego_names = [f"l{i}-{run_id}.example.test" for i in range(args.n)]
        started = time.perf_counter()
        lego_each = [lego_run(lego, env, pebble.directory, bind.resolver_port, lego_path, d) for d in lego_names]
        lego_wall = time.perf_counter() - started
        lego_single = lego_run(
            lego, env, pebble.directory, bind.resolver_port, lego_path, f"ls-{run_id}.example.test"
        )
        engine.dispose()
    finally:
        pebble.stop()
        bind.stop()
        shutil.rmtree(work, ignore_errors=True)

    ratio = lego_wall / ours_wall
    print(f"certificates per client: {args.n} (worker concurrency {args.concurrency}); Pebble + BIND 9 on loopback")
    print(f"worker: {ours_wall:7.2f} s for {args.n}  ({args.n / ours_wall:.2f} certs/s)")
    mean = sum(lego_each) / len(lego_each)
    print(f"lego:   {lego_wall:7.2f} s for {args.n}  (one after another; mean {mean:.2f} s each)")
    print(f"speed-up (lego / worker): {ratio:.1f}x")
    print(f"single certificate: worker {ours_single:.2f} s in-process, {ours_cli_single:.2f} s as "
          f"`proxyos-worker run-once issue` (new process); lego {lego_single:.2f} s (new process)")
    print("note: a shared 2-core machine; figures are noisy. lego runs with --dns.disable-cp (BIND is not on port 53).")
    print(json.dumps({
        "bench": "certs", "n": args.n, "concurrency": args.concurrency,
        "worker_wall_s": round(ours_wall, 3), "lego_wall_s": round(lego_wall, 3), "speedup": round(ratio, 2),
        "worker_single_s": round(ours_single, 3), "worker_cli_single_s": round(ours_cli_single, 3),
        "lego_single_s": round(lego_single, 3),
    }))


if __name__ == "__main__":
    main()
