"""TLS to the cloud: the system trust store plus the configured `[cloud] ca_file`."""

from __future__ import annotations

import os
import re
import ssl
from pathlib import Path
from typing import TYPE_CHECKING

from agent.errors import ConfigError

if TYPE_CHECKING:
    from cryptography.x509 import CertificateBuilder


_HASHED_NAME = re.compile(r"[0-9a-f]{8}\.[0-9]+")


def _hashed_directory() -> str | None:
    """The system's CA directory of `c_rehash` links, if it has any and nobody pointed
    OpenSSL at a bundle file instead (SSL_CERT_FILE)."""
    paths = ssl.get_default_verify_paths()
    if os.environ.get(paths.openssl_cafile_env) or not paths.capath:
        return None
    try:
        with os.scandir(paths.capath) as entries:
            if any(_HASHED_NAME.fullmatch(entry.name) for entry in entries):
                return paths.capath
    except OSError:
        return None
    return None


def client_context(ca_file: str = "", setting: str = "cloud.ca_file") -> ssl.SSLContext:
    """Verifying TLS with `ssl.create_default_context()`'s settings: the system store plus
    `ca_file`; ConfigError names `setting`.

    The system store comes from the hashed directory when there is one: OpenSSL then reads
    only the CA that a server's chain names, where the bundle file would keep all ~140
    certificates parsed in memory (0.7 MiB per context, see docs/scale.md)."""
    context = ssl.create_default_context(capath=_hashed_directory())
    if ca_file:
        if not Path(ca_file).is_file():
            raise ConfigError(f"{setting} {ca_file} does not exist")
        try:
            context.load_verify_locations(cafile=ca_file)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"{setting} {ca_file} is not a PEM bundle: {exc}") from None
    return context


def as_tls_server_leaf(builder: CertificateBuilder) -> CertificateBuilder:
    """`builder` with the extensions of a TLS server's leaf certificate: not a CA, keys for
    signatures only, server authentication only (the local API's and the mock's alike)."""
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    return (
        builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    )
