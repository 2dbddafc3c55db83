"""The certificate worker's own tables (migrations 0004, 0006 and 0008). The new `certificates`
columns live with that table in `proxyos.py`."""

from __future__ import annotations

from sqlalchemy import Table

from .columns import INT, c, metadata

# The ACME account's private key (PEM; `enc:v2:` encrypted with PROXYOS_SECRET when it is
# set), kept in the database so that it survives restarts and is part of every backup.
acme_account_keys = Table(
    "acme_account_keys",
    metadata,
    c("account_id", pk=True),
    c("key_pem", nn=True),
    c("account_uri"),
    c("updated_at", INT, nn=True),
)

# Every TXT value published for a challenge, until it is removed again: a worker that is
# killed mid-order leaves a row here, and the next attempt cleans the value up.
cert_dns_records = Table(
    "cert_dns_records",
    metadata,
    c("id", pk=True),
    c("certificate_id", nn=True),
    c("provider_id", nn=True),
    c("fqdn", nn=True),
    c("zone", nn=True),
    c("value", nn=True),
    c("created_at", INT, nn=True),
)

# The ACME order in flight for a certificate (migration 0006), saved as soon as the CA
# created it and deleted in the transaction that stores the issued certificate: a worker
# killed in between finds the order again instead of having a second certificate issued.
# The new private key is `enc:v2:` encrypted in `key_pem`; without PROXYOS_SECRET it is in
# the mode-0600 file `key_file` instead, never in plaintext here.
cert_orders = Table(
    "cert_orders",
    metadata,
    c("certificate_id", pk=True),
    c("account_id", nn=True),
    c("order_url", nn=True),
    c("names", nn=True),  # JSON list, as ordered
    c("key_pem"),
    c("key_file"),
    c("created_at", INT, nn=True),
)

# What the workers loaded into Caddy for a certificate (migration 0008), one row per
# certificate they deploy: the certificate Caddy was last given (serial, fingerprint,
# when), and while the current one is not there yet, since when, why and the next try.
cert_deployments = Table(
    "cert_deployments",
    metadata,
    c("certificate_id", pk=True),
    c("target", nn=True),  # caddy
    c("names"),  # JSON list, of the certificate deployed
    c("serial"),  # hex
    c("fingerprint"),  # SHA-256 of the leaf certificate's DER, hex
    c("deployed_at", INT),
    c("pending_since", INT),  # the current certificate is not in Caddy since then
    c("last_attempt_at", INT),
    c("last_error"),
    c("failures", INT, nn=True, default=0),
    c("next_attempt_at", INT),
)
