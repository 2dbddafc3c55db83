"""Private keys and CSRs for certificates."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

KEY_TYPES = ("ecdsa", "rsa")
CN_MAX = 64  # ub-common-name (RFC 5280); CAs take the names from the SANs anyway


def new_private_key(key_type: str = "ecdsa"):
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_csr(key, names: list[str]) -> bytes:
    """A CSR for `names` (ACME names, ASCII). The first name is the common name when it
    fits; a longer one gets a SAN-only CSR (empty subject), which ACME CAs accept."""
    subject = [x509.NameAttribute(NameOID.COMMON_NAME, names[0])] if len(names[0]) <= CN_MAX else []
    builder = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name(subject))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
        )
    )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def leaf_of(fullchain_pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(fullchain_pem)


def validity(cert: x509.Certificate) -> tuple[int, int]:
    return int(cert.not_valid_before_utc.timestamp()), int(cert.not_valid_after_utc.timestamp())
