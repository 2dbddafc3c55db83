"""The ACME account per (directory, e-mail): created once, its key kept in the database
(`acme_account_keys`, encrypted with PROXYOS_SECRET when set) and recorded in
`acme_accounts`. `AcmeSession` fetches the directory and the account once per run and
hands each worker thread its own connection to the CA (nonces are per connection)."""

from __future__ import annotations

import base64
import hashlib
import logging
from dataclasses import dataclass

import josepy as jose
import requests
import sqlalchemy as sa
from acme import errors as acme_errors
from acme import messages
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy.engine import Engine

from db.engine import write_transaction
from db.schema import acme_account_keys, acme_accounts
from db.sql import insert_or_ignore
from tasks.redaction import remember

from .acme_errors import call
from .acme_log import quiet_acme_logging
from .ca import CertificateAuthority
from .credentials import decrypt, encrypt, is_encrypted
from .errors import CertError
from .settings import CertSettings

log = logging.getLogger("proxyos.certs.account")


@dataclass
class AcmeSession:
    directory_url: str
    directory: messages.Directory
    key: jose.JWK
    regr: messages.RegistrationResource
    account_id: str
    verify: bool | str

    def ca(self) -> CertificateAuthority:
        """A connection of the calling thread's own."""
        return CertificateAuthority.for_account(self.directory, self.key, self.regr, self.verify)


def account_id_for(directory_url: str, email: str) -> str:
    digest = hashlib.sha256(f"{directory_url}\n{email}".encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()[:21]


NO_SECRET = (
    "PROXYOS_SECRET is not set: the ACME account key is stored only encrypted with it, so no "
    "account is created; set PROXYOS_SECRET (the dashboard's value) for the workers"
)


def _new_key_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _stored_key(conn, account_id: str):
    return (
        conn.execute(sa.select(acme_account_keys).where(acme_account_keys.c.account_id == account_id))
        .mappings()
        .first()
    )


def _load_or_create_key(
    engine: Engine, settings: CertSettings, directory_url: str, now: int
) -> tuple[str, jose.JWK, str | None]:
    """The account's key: created (and stored encrypted) the first time. A plaintext key
    an earlier version stored without a secret is used as it is, and encrypted in place
    once PROXYOS_SECRET is set. Without a secret nothing is written (CertError)."""
    with write_transaction(engine) as conn:
        row = conn.execute(
            sa.select(acme_accounts.c.id)
            .where(
                acme_accounts.c.acme_url == directory_url, acme_accounts.c.email == settings.email
            )
            .order_by(acme_accounts.c.created_at)
        ).first()
        account_id = row.id if row else account_id_for(directory_url, settings.email)
        stored = _stored_key(conn, account_id)
        if stored is None and not settings.secret:
            raise CertError(NO_SECRET)
        if row is None:
            conn.execute(
                insert_or_ignore(conn, acme_accounts).values(
                    id=account_id,
                    email=settings.email,
                    provider=settings.ca_label,
                    acme_url=directory_url,
                    created_at=now,
                )
            )
        if stored is None:
            conn.execute(
                insert_or_ignore(conn, acme_account_keys).values(
                    account_id=account_id, key_pem=encrypt(_new_key_pem(), settings.secret), updated_at=now
                )
            )
            stored = _stored_key(conn, account_id)
        pem = decrypt(stored["key_pem"], settings.secret, f"the key of ACME account {account_id}")
        remember(pem)
        if not is_encrypted(stored["key_pem"]):
            if settings.secret:
                conn.execute(
                    acme_account_keys.update()
                    .where(acme_account_keys.c.account_id == account_id, acme_account_keys.c.key_pem == pem)
                    .values(key_pem=encrypt(pem, settings.secret), updated_at=now)
                )
                log.info("the key of ACME account %s is now stored encrypted with PROXYOS_SECRET", account_id)
            else:
                log.warning(
                    "the key of ACME account %s is stored unencrypted (by an earlier version); set "
                    "PROXYOS_SECRET and the next run encrypts it", account_id
                )
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    return account_id, jose.JWKEC(key=key), stored["account_uri"]


def open_session(
    engine: Engine, settings: CertSettings, directory_url: str, now: int
) -> AcmeSession:
    """Directory + account, registering the account at the CA the first time."""
    quiet_acme_logging()
    account_id, key, uri = _load_or_create_key(engine, settings, directory_url, now)
    verify: bool | str = settings.ca_bundle or True
    try:
        ca = CertificateAuthority.open(directory_url, key, verify)
    except requests.exceptions.SSLError:
        raise CertError(
            f"TLS verification of the ACME directory {directory_url} failed: for a private CA "
            "set PROXYOS_ACME_CA_BUNDLE to its root certificate"
        ) from None
    except (requests.RequestException, acme_errors.Error, ValueError) as exc:
        raise CertError(
            f"cannot read the ACME directory {directory_url}: {type(exc).__name__}"
        ) from None
    regr = _register(ca, key, settings)
    if regr.uri != uri:
        with write_transaction(engine) as conn:
            conn.execute(
                acme_account_keys.update()
                .where(acme_account_keys.c.account_id == account_id)
                .values(account_uri=regr.uri, updated_at=now)
            )
    return AcmeSession(directory_url, ca.directory, key, regr, account_id, verify)


def _register(ca: CertificateAuthority, key: jose.JWK, settings: CertSettings) -> messages.RegistrationResource:
    """The account of `key` at the CA, registered with the settings' e-mail and external
    account binding."""
    eab = None
    if settings.eab_kid and settings.eab_hmac_key:
        remember(settings.eab_hmac_key)
        eab = messages.ExternalAccountBinding.from_data(
            account_public_key=key.public_key(),
            kid=settings.eab_kid,
            hmac_key=settings.eab_hmac_key,
            directory=ca.directory,
        )
    elif ca.external_account_required():
        raise CertError(
            "the CA requires external account binding: set PROXYOS_ACME_EAB_KID and "
            "PROXYOS_ACME_EAB_HMAC_KEY"
        )
    fields = {"terms_of_service_agreed": True}
    if settings.email:
        fields["email"] = settings.email
    if eab:
        fields["external_account_binding"] = eab
    registration = messages.NewRegistration.from_data(**fields)
    return call(ca.register, registration, what="creating the ACME account")
