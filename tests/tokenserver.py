"""A real OAuth2 token endpoint on localhost, so tests exercise google-auth's own refresh code.

with TokenServer() as ts:
    sa = write_service_account(tmp_path / "sa.json", ts.url)
    ...                      # google-auth POSTs a signed JWT to ts.url and gets ts.token back
    assert ts.requests == 1
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


class TokenServer:
    """Answers google-auth's JWT-bearer (and refresh_token) grants with fresh tokens.

    Counts requests; `fail` makes it answer invalid_grant; `delay` makes it stall before answering.
    """

    def __init__(self, expires_in: int = 3600, prefix: str = "ya29.test-") -> None:
        self.expires_in = expires_in
        self.prefix = prefix
        self.fail = False
        self.delay = 0.0  # seconds to wait before answering, to widen race windows
        self.requests = 0
        self.claims: list[dict[str, Any]] = []  # decoded JWT payloads, one per good request
        self._counter = 0
        self._mutex = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    @property
    def token(self) -> str:
        """The token handed out most recently (or the one the next request will get, before any)."""
        return f"{self.prefix}{max(self._counter, 1)}"

    def issued(self, token: str) -> bool:
        """Whether this endpoint handed out `token` (for an emulator that takes any of them)."""
        prefix, _, number = token.partition(self.prefix)
        return not prefix and number.isdigit() and 0 < int(number) <= self._counter

    def __enter__(self) -> TokenServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                status, body = owner._answer(self)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/token"
        # A short poll interval keeps shutdown (and so every test's teardown) fast.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="TokenServer", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _answer(self, handler: BaseHTTPRequestHandler) -> tuple[int, dict[str, Any]]:
        length = int(handler.headers.get("Content-Length") or 0)
        form = urllib.parse.parse_qs(handler.rfile.read(length).decode())
        with self._mutex:
            self.requests += 1
        if self.delay:
            time.sleep(self.delay)
        if urllib.parse.urlsplit(handler.path).path != "/token":
            return 404, {"error": "not_found"}
        grant = (form.get("grant_type") or [""])[0]
        if grant == "refresh_token":
            # What authorized_user (gcloud ADC) credentials send.
            if not form.get("refresh_token"):
                return 400, {"error": "invalid_request", "error_description": "refresh_token missing"}
            return self._grant({"refresh_token": True})
        if grant != JWT_BEARER:
            return 400, {"error": "unsupported_grant_type", "error_description": grant}
        assertion = (form.get("assertion") or [""])[0]
        parts = assertion.split(".")
        if len(parts) != 3:
            return 400, {"error": "invalid_request", "error_description": "assertion is not a JWT"}
        try:
            header = json.loads(_b64decode(parts[0]))
            claims = json.loads(_b64decode(parts[1]))
        except ValueError:
            return 400, {"error": "invalid_request", "error_description": "assertion is not a JWT"}
        if header.get("alg") != "RS256" or not parts[2]:
            return 400, {
                "error": "invalid_request",
                "error_description": "assertion is not signed with RS256",
            }
        return self._grant(claims)

    def _grant(self, claims: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if self.fail:
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        with self._mutex:
            self.claims.append(claims)
            self._counter += 1
            token = f"{self.prefix}{self._counter}"
        return 200, {"access_token": token, "expires_in": self.expires_in, "token_type": "Bearer"}


def write_service_account(
    path: str | os.PathLike[str],
    token_uri: str,
    project_id: str | None = "test-project",
    *,
    quota_project_id: str | None = None,
    client_email: str = "relay-test@test-project.iam.gserviceaccount.com",
) -> str:
    """Write a service-account key file with a fresh RSA key; returns the path as a string."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    info: dict[str, Any] = {
        "type": "service_account",
        "private_key_id": os.urandom(20).hex(),
        "private_key": pem,
        "client_email": client_email,
        "client_id": "100000000000000000000",
        "token_uri": token_uri,
    }
    if project_id is not None:
        info["project_id"] = project_id
    if quota_project_id is not None:
        info["quota_project_id"] = quota_project_id
    with open(path, "w", encoding="utf-8") as f:
        json.dump(info, f)
    return os.fspath(path)
