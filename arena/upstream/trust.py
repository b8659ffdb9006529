"""The certificate authorities the arena trusts on its way to endpoints: the operator's bundle
(ARENA_CA_BUNDLE), else SSL_CERT_FILE or SSL_CERT_DIR as Python's HTTP clients read them,
else certifi's public authorities.

A bundle replaces the public authorities, as REQUESTS_CA_BUNDLE and SSL_CERT_FILE do: behind a
proxy that inspects TLS, its own authority is the one that signs every endpoint's certificate.
"""

from __future__ import annotations

import logging
import os
import ssl
from pathlib import Path

import certifi

from arena.errors import OutboundSetupError

log = logging.getLogger(__name__)


def trusted_context(ca_bundle: Path | None) -> ssl.SSLContext:
    """A TLS client context trusting the first source that is set; OutboundSetupError, naming
    the variable, when that source is missing or holds no certificate."""
    cafile: str | None = None
    capath: str | None = None
    if ca_bundle is not None:
        variable, cafile = "ARENA_CA_BUNDLE", str(ca_bundle)
    elif os.environ.get("SSL_CERT_FILE"):
        variable, cafile = "SSL_CERT_FILE", os.environ["SSL_CERT_FILE"]
    elif os.environ.get("SSL_CERT_DIR"):
        variable, capath = "SSL_CERT_DIR", os.environ["SSL_CERT_DIR"]
    else:
        variable, cafile = "certifi", certifi.where()
    where = cafile or capath or ""
    if cafile is not None and not Path(cafile).is_file():
        raise OutboundSetupError(f"{variable}: {where} is not a file of certificates")
    if capath is not None and not Path(capath).is_dir():
        raise OutboundSetupError(f"{variable}: {where} is not a folder of certificates")
    try:
        context = ssl.create_default_context(cafile=cafile, capath=capath)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise OutboundSetupError(
            f"{variable}: {where} could not be read as PEM certificates ({exc})"
        ) from None
    # A folder is read lazily, certificate by certificate, so only a file can be counted now.
    if cafile is not None and context.cert_store_stats()["x509_ca"] == 0:
        raise OutboundSetupError(
            f"{variable}: {where} holds no certificate authority (a PEM file of CA certificates "
            "is expected)"
        )
    log.info("endpoint certificates are checked against %s (%s)", where, variable)
    return context
