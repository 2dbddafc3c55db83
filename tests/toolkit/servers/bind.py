"""BIND 9 for the tests and the benchmark: authoritative for test zones (RFC 2136
updates signed with TSIG), with a forwarding resolver in front of it for the CA."""

from __future__ import annotations

import base64
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rdataclass
import dns.rdatatype
import dns.tsigkeyring
import dns.update

from ..processes import free_port, stop_process, wait_for_start

ZONES = ("example.test", "delegated.test")
TSIG_NAME = "proxyos-test."


@dataclass
class Bind:
    """The authoritative server (`port`) and, in front of it, a forwarding resolver
    (`resolver_port`) for the CA: like a real CA's resolver, it follows CNAMEs from one
    zone into another, which an authoritative-only server does not."""

    port: int
    tsig_secret: str
    directory: Path
    proc: subprocess.Popen
    resolver_port: int = 0
    resolver_proc: subprocess.Popen | None = None

    @property
    def credentials(self) -> dict:
        return {"nameserver": "127.0.0.1", "port": self.port, "tsig_key": TSIG_NAME,
                "tsig_secret": self.tsig_secret, "tsig_algorithm": "hmac-sha256"}

    def txt(self, name: str) -> set[str]:
        response = dns.query.udp(dns.message.make_query(name, "TXT"), "127.0.0.1", port=self.port, timeout=3)
        return {b"".join(r.strings).decode() for rrset in response.answer
                if rrset.rdtype == dns.rdatatype.TXT for r in rrset}

    def update(self, zone: str, name: str, rdtype: str, value: str, ttl: int = 60) -> None:
        keyring = dns.tsigkeyring.from_text({TSIG_NAME: self.tsig_secret})
        update = dns.update.UpdateMessage(zone, keyring=keyring, keyalgorithm="hmac-sha256")
        update.replace(name + ".", ttl, rdtype, value)
        response = dns.query.tcp(update, "127.0.0.1", port=self.port, timeout=5)
        assert response.rcode() == 0, response

    def zone_txt_names(self, zone: str) -> list[str]:
        """Every TXT owner in `zone` (zone transfer over TSIG)."""
        import dns.xfr  # noqa: F401
        import dns.zone

        keyring = dns.tsigkeyring.from_text({TSIG_NAME: self.tsig_secret})
        xfr = dns.query.xfr("127.0.0.1", zone, port=self.port, keyring=keyring, keyalgorithm="hmac-sha256")
        z = dns.zone.from_xfr(xfr)
        return [f"{name}.{zone}" for name, node in z.nodes.items()
                if node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.TXT)]

    def stop(self) -> None:
        for proc in (self.resolver_proc, self.proc):
            if proc is not None:
                stop_process(proc)


def _named(named: str, conf: Path, log: Path, port: int, what: str) -> subprocess.Popen:
    handle = open(log, "w")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen([named, "-g", "-c", str(conf), "-n", "1"], stdout=handle, stderr=subprocess.STDOUT)

    def ready() -> bool:
        try:
            response = dns.query.udp(dns.message.make_query("example.test", "SOA"), "127.0.0.1",
                                     port=port, timeout=0.5)
            return bool(response.answer)
        except (OSError, dns.exception.DNSException):
            return False

    try:
        wait_for_start(ready, what, proc, log)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc


def start_bind(directory: Path, forwards: dict[str, int] | None = None) -> Bind:
    """`forwards`: more zones the resolver sends to other servers on loopback (zone -> port)."""
    named = shutil.which("named") or "/usr/sbin/named"
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    secret = base64.b64encode(secrets.token_bytes(32)).decode()
    zones = []
    for zone in ZONES:
        (directory / f"{zone}.zone").write_text(
            f"$TTL 60\n@ IN SOA ns1.{zone}. hostmaster.{zone}. 1 60 60 600 60\n"
            f"@ IN NS ns1.{zone}.\nns1 IN A 127.0.0.1\n@ IN A 127.0.0.1\n"
        )
        zones.append(
            f'zone "{zone}" {{ type primary; file "{directory}/{zone}.zone"; '
            f'allow-update {{ key "{TSIG_NAME}"; }}; allow-transfer {{ key "{TSIG_NAME}"; }}; }};'
        )
    conf = directory / "named.conf"
    conf.write_text(
        f'options {{ directory "{directory}"; pid-file "{directory}/named.pid"; '
        f"listen-on port {port} {{ 127.0.0.1; }}; listen-on-v6 {{ none; }}; recursion no; "
        f'dnssec-validation no; notify no; session-keyfile "{directory}/session.key"; }};\n'
        f"controls {{ }};\n"
        f'key "{TSIG_NAME}" {{ algorithm hmac-sha256; secret "{secret}"; }};\n' + "\n".join(zones) + "\n"
    )
    proc = _named(named, conf, directory / "named.log", port, "named")
    bind = Bind(port, secret, directory, proc)
    resolver_dir = directory / "resolver"
    resolver_dir.mkdir(exist_ok=True)
    bind.resolver_port = free_port()
    targets = {zone: port for zone in ZONES} | (forwards or {})
    forward = "\n".join(
        f'zone "{zone}" {{ type forward; forward only; forwarders {{ 127.0.0.1 port {target}; }}; }};'
        for zone, target in targets.items()
    )
    (resolver_dir / "named.conf").write_text(
        f'options {{ directory "{resolver_dir}"; pid-file "{resolver_dir}/named.pid"; '
        f"listen-on port {bind.resolver_port} {{ 127.0.0.1; }}; listen-on-v6 {{ none; }}; "
        "recursion yes; allow-query { 127.0.0.1; }; allow-recursion { 127.0.0.1; }; "
        "dnssec-validation no; max-cache-ttl 0; max-ncache-ttl 0; "
        f'session-keyfile "{resolver_dir}/session.key"; }};\ncontrols {{ }};\n{forward}\n'
    )
    try:
        bind.resolver_proc = _named(named, resolver_dir / "named.conf", resolver_dir / "named.log",
                                    bind.resolver_port, "named (resolver)")
    except BaseException:
        bind.stop()
        raise
    return bind
