"""The deploy hook (PROXYOS_CERT_DEPLOY_HOOK): a shell command run after each issuance,
with the domain and file paths in its environment, so the proxy loads the new files."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tasks.redaction import redact

SECRET_VARIABLES = ("PROXYOS_SECRET", "PROXYOS_ACME_EAB_HMAC_KEY", "PROXYOS_DATABASE_URL")
TIMEOUT = 300


def run_deploy_hook(
    command: str, cert_id: str, domain: str, names: list[str], fullchain: Path, key: Path
) -> str | None:
    """Run it; None on success, else a one-line reason (the certificate is kept)."""
    env = {k: v for k, v in os.environ.items() if k not in SECRET_VARIABLES}
    env.update(
        PROXYOS_CERT_ID=cert_id,
        PROXYOS_CERT_DOMAIN=domain,
        PROXYOS_CERT_NAMES=" ".join(names),
        PROXYOS_CERT_FULLCHAIN=str(fullchain),
        PROXYOS_CERT_KEY=str(key),
    )
    try:
        done = subprocess.run(
            command, shell=True, env=env, capture_output=True, text=True, timeout=TIMEOUT
        )
    except subprocess.TimeoutExpired:
        return f"deploy hook did not finish within {TIMEOUT} s"
    except OSError as exc:
        return f"deploy hook could not start: {exc}"
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [""]
        return redact(f"deploy hook exited with status {done.returncode}: {tail[0][:200]}").rstrip(
            ": "
        )
    return None
