"""A self-signed certificate for 127.0.0.1, for tests that need wss:// (the benchmark's own generator)."""

from __future__ import annotations

import ssl
from pathlib import Path

from bench.tls import self_signed


def localhost_contexts(directory: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server, client) TLS contexts; the client trusts exactly the new certificate."""
    cert, key = self_signed(directory)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=str(cert))
    return server, client
