"""A real OpenID provider on loopback, for the tests and `make bench`: discovery, a JWKS it can
rotate, tokens signed with keys it generates, and a switch that takes it down. Counts its hits.

It serves https, as production requires of a provider, with a certificate for `localhost` from
a CA of its own: the service trusts it through `AUTH__CA_FILE=<provider.ca_file>`."""

from __future__ import annotations

import json
import shutil
import ssl
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from devtools.loopback import serve_in_thread
from devtools.pgcluster import Certificates

AUDIENCE = "api://service-under-test"


@dataclass(frozen=True)
class SigningKey:
    kid: str
    algorithm: str
    private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

    @classmethod
    def new(cls, algorithm: str = "RS256") -> SigningKey:
        private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
        if algorithm == "ES256":
            private = ec.generate_private_key(ec.SECP256R1())
        else:
            private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return cls(uuid.uuid4().hex[:12], algorithm, private)

    def jwk(self) -> dict[str, Any]:
        public = self.private.public_key()
        exported = (
            ECAlgorithm.to_jwk(public, as_dict=True)
            if isinstance(public, ec.EllipticCurvePublicKey)
            else RSAAlgorithm.to_jwk(public, as_dict=True)
        )
        return exported | {"kid": self.kid, "use": "sig", "alg": self.algorithm}


@dataclass
class Provider:
    ca_file: Path
    port: int = 0
    keys: list[SigningKey] = field(default_factory=lambda: [SigningKey.new()])
    # Published beside the signing keys, as they are (keys a service must skip, for instance).
    extra_jwks: list[dict[str, Any]] = field(default_factory=list)
    hits: int = 0
    down: bool = False
    discovery_down: bool = False  # the key set still served at /jwks
    # Auth0 writes its issuer with a trailing slash, and its tokens say it so.
    trailing_slash: bool = False
    # What the discovery document says the issuer is (None: the truth).
    discovery_issuer: str | None = None

    @property
    def issuer(self) -> str:
        return f"https://localhost:{self.port}" + ("/" if self.trailing_slash else "")

    @property
    def jwks_url(self) -> str:
        return f"https://localhost:{self.port}/jwks"

    def rotate(self, algorithm: str = "RS256") -> SigningKey:
        """Publish a new key beside the old ones (as providers do before signing with it)."""
        key = SigningKey.new(algorithm)
        self.keys = [*self.keys, key]
        return key

    def token(
        self,
        *,
        key: SigningKey | None = None,
        scope: str = "items:read items:write",
        lifetime: int = 300,
        headers: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        key = key or self.keys[0]
        now = int(time.time())
        body = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": "user-1234",
            "client_id": "client-abc",
            "scope": scope,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
        } | claims
        header = {"kid": key.kid, "typ": "at+jwt"} | (headers or {})
        return jwt.encode(body, key.private, algorithm=key.algorithm, headers=header)

    def answer(self, path: str) -> tuple[int, dict[str, Any]]:
        self.hits += 1
        if self.down:
            return 503, {"error": "down for the test"}
        if path == "/.well-known/openid-configuration" and not self.discovery_down:
            return 200, {"issuer": self.discovery_issuer or self.issuer, "jwks_uri": self.jwks_url}
        if path == "/jwks":
            return 200, {"keys": [key.jwk() for key in self.keys] + self.extra_jwks}
        return 404, {}


def _tls(folder: Path) -> tuple[ssl.SSLContext, Path]:
    """A server context for `localhost` and the CA file that verifies it."""
    authority = Certificates.new_ca("test OpenID provider CA")
    cert, key = authority.server_pair("localhost")
    (folder / "cert.pem").write_bytes(cert)
    (folder / "key.pem").write_bytes(key)
    (folder / "ca.pem").write_bytes(authority.ca_cert)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    return context, folder / "ca.pem"


@contextmanager
def openid_provider() -> Iterator[Provider]:
    folder = Path(tempfile.mkdtemp(prefix="oidc-provider-"))
    tls, ca_file = _tls(folder)
    provider = Provider(ca_file)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, document = provider.answer(self.path)
            body = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    try:
        with serve_in_thread(Handler, tls) as provider.port:
            yield provider
    finally:
        shutil.rmtree(folder, ignore_errors=True)
