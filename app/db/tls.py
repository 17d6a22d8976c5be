"""The `ssl.SSLContext` handed to asyncpg, built from libpq-style settings.

Why not `?sslmode=` in the URL: SQLAlchemy passes URL query parameters to `asyncpg.connect()` as
keyword arguments, where libpq's names raise `TypeError` (sqlalchemy#6275, asyncpg#737), and a CA
file cannot be named there at all. An explicit context also means `require` really means
"encrypt, do not verify": asyncpg would otherwise pick up `~/.postgresql/root.crt` and silently
verify (docs/facts.md: database TLS).
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Literal

from app.settings import SslMode


def build_ssl_context(mode: SslMode, ca_file: Path | None) -> ssl.SSLContext | Literal[False]:
    """Return what asyncpg's `ssl=` argument should be for this libpq mode."""
    if mode is SslMode.DISABLE:
        return False
    if mode is SslMode.REQUIRE:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    # verify-ca and verify-full trust only the configured CA, never the system store: a public
    # CA would vouch for any host that bought a certificate.
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    context.check_hostname = mode is SslMode.VERIFY_FULL
    context.verify_mode = ssl.CERT_REQUIRED
    return context
