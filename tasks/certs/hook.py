"""The deploy hook (PROXYOS_CERT_DEPLOY_HOOK): a shell command run after each issuance,
with the domain and file paths in its environment, so the proxy loads the new files.

It runs in a process group of its own and is waited on for its own exit only: its
output goes to an unlinked temporary file, not a pipe, so a background child it leaves
(`systemctl reload ... &`) never holds the issuance. On timeout the whole group is
killed. Its environment is minimal: nothing of the workers' database, queue or secrets."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
from pathlib import Path

from tasks.redaction import redact

TIMEOUT = 300.0
KEPT_VARIABLES = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "USER", "LOGNAME")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TAIL_BYTES = 4096  # of the output, read for the failure message


def hook_environment(cert_id: str, domain: str, names: list[str], fullchain: Path, key: Path) -> dict[str, str]:
    env = {k: os.environ[k] for k in KEPT_VARIABLES if k in os.environ}
    env.setdefault("PATH", DEFAULT_PATH)
    env.update(
        PROXYOS_CERT_ID=cert_id,
        PROXYOS_CERT_DOMAIN=domain,
        PROXYOS_CERT_NAMES=" ".join(names),
        PROXYOS_CERT_FULLCHAIN=str(fullchain),
        PROXYOS_CERT_KEY=str(key),
    )
    return env


def run_deploy_hook(
    command: str, cert_id: str, domain: str, names: list[str], fullchain: Path, key: Path
) -> str | None:
    """Run it; None on success, else a one-line reason (the certificate is kept)."""
    if not command.strip():
        return None
    with tempfile.TemporaryFile(prefix="proxyos-hook-") as output:
        try:
            proc = subprocess.Popen(
                command, shell=True, env=hook_environment(cert_id, domain, names, fullchain, key),
                stdin=subprocess.DEVNULL, stdout=output, stderr=output, start_new_session=True,
            )
        except OSError as exc:
            return f"deploy hook could not start: {exc}"
        try:
            code = proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return f"deploy hook did not finish within {TIMEOUT:g} s (its processes were killed)"
        if code == 0:
            return None
        output.seek(max(0, output.seek(0, os.SEEK_END) - TAIL_BYTES))
        tail = output.read().decode(errors="replace").strip().splitlines()[-1:] or [""]
    return redact(f"deploy hook exited with status {code}: {tail[0][:200]}").rstrip(": ")
