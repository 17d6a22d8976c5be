"""A throwaway or project-local PostgreSQL cluster from the installed server binaries.

Used by `make run` (a cluster under `.local/`, reused across runs) and by the test session (a
fresh cluster on a free port). Both run with TLS on and a certificate for `localhost` signed by a
CA generated here, so the service's `verify-full` path is exercised every day, not only in
production. Written by hand because it is small and pytest-postgresql starts servers without TLS.

PostgreSQL refuses to run as root: as root the server runs as the `postgres` user (files owned
by it), otherwise as the current user. Port and TLS settings live in a file included from
`postgresql.conf`, so `pg_ctl restart` keeps them (docs/facts.md: benchmarks and tests).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from devtools.ports import free_port

APP_USER = "app"
STATE_FILE = "cluster.json"
CLUSTER_CONF = "app_cluster.conf"


def find_bindir() -> Path:
    """PostgreSQL's server binaries: `PG_BINDIR`, Debian's versioned folder, or `PATH`."""
    if env := os.environ.get("PG_BINDIR"):
        return Path(env)
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if candidates:
        return candidates[-1].parent
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    raise RuntimeError("PostgreSQL server binaries not found; install them or set PG_BINDIR")


def run_as() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def server_user_can_reach(path: Path) -> bool:
    """Whether the user PostgreSQL runs as may enter `path` (or its nearest existing parent)."""
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not run_as():
        return os.access(existing, os.X_OK)
    result = subprocess.run([*run_as(), "test", "-x", str(existing)], check=False)
    return result.returncode == 0


def chown_to_server_user(path: Path) -> None:
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        os.chown(path, entry.pw_uid, entry.pw_gid)


@dataclass(frozen=True)
class Certificates:
    ca_cert: bytes
    ca_key: ec.EllipticCurvePrivateKey

    @classmethod
    def new_ca(cls, name: str = "app test CA") -> Certificates:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        return cls(cert.public_bytes(serialization.Encoding.PEM), key)

    def server_pair(self, dns_name: str = "localhost") -> tuple[bytes, bytes]:
        """A server certificate naming only `dns_name` (no IP), and its private key."""
        ca = x509.load_pem_x509_certificate(self.ca_cert)
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_name)]))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=825))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(self.ca_key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return cert.public_bytes(serialization.Encoding.PEM), key_pem


@dataclass(frozen=True)
class PgCluster:
    base: Path
    port: int
    password: str
    bindir: Path

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def ca_file(self) -> Path:
        return self.base / "ca.crt"

    @property
    def log_file(self) -> Path:
        return self.base / "postgres.log"

    # -- lifecycle -----------------------------------------------------------------------

    @classmethod
    def create(cls, base: Path, *, port: int | None = None) -> PgCluster:
        """initdb, TLS material, configuration; then start it and create the app role and db."""
        base.mkdir(parents=True, exist_ok=True)
        base.chmod(0o755)  # the server user must reach its data directory
        chown_to_server_user(base)
        cluster = cls(base, port or free_port(), secrets.token_urlsafe(24), find_bindir())
        cluster._initdb()
        cluster._write_tls()
        cluster.write_conf()
        (base / STATE_FILE).write_text(
            json.dumps({"port": cluster.port, "password": cluster.password})
        )
        (base / STATE_FILE).chmod(0o600)
        cluster.start()
        cluster.psql(f"CREATE ROLE {APP_USER} LOGIN PASSWORD '{cluster.password}'")
        cluster.create_database(APP_USER)
        return cluster

    @classmethod
    def load(cls, base: Path) -> PgCluster | None:
        state = base / STATE_FILE
        if not state.is_file() or not (base / "data" / "PG_VERSION").is_file():
            return None
        saved = json.loads(state.read_text())
        return cls(base, int(saved["port"]), str(saved["password"]), find_bindir())

    def _initdb(self) -> None:
        pwfile = self.base / "superuser.pw"
        pwfile.write_text(secrets.token_urlsafe(24))
        chown_to_server_user(pwfile)
        try:
            self._pg(
                "initdb",
                "-D",
                str(self.data),
                "-U",
                "postgres",
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            )
        finally:
            pwfile.unlink()

    def _write_tls(self) -> None:
        ca = Certificates.new_ca()
        cert, key = ca.server_pair("localhost")
        self.ca_file.write_bytes(ca.ca_cert)
        for name, content, mode in (("server.crt", cert, 0o644), ("server.key", key, 0o600)):
            path = self.data / name
            path.write_bytes(content)
            path.chmod(mode)  # PostgreSQL refuses a key readable by others
            chown_to_server_user(path)

    def write_conf(self) -> None:
        """Port, sockets, TLS and access rules; rewritten to move a cluster to another port."""
        conf = self.data / CLUSTER_CONF
        conf.write_text(
            f"port = {self.port}\n"
            "listen_addresses = '127.0.0.1,::1'\n"
            f"unix_socket_directories = '{self.data}'\n"
            "ssl = on\n"
            "ssl_cert_file = 'server.crt'\n"
            "ssl_key_file = 'server.key'\n"
            "ssl_min_protocol_version = 'TLSv1.2'\n"
            "fsync = off\n"  # throwaway and development data only
            "max_connections = 100\n"
        )
        chown_to_server_user(conf)
        main_conf = self.data / "postgresql.conf"
        include = f"include_if_exists = '{CLUSTER_CONF}'\n"
        if include not in main_conf.read_text():
            with main_conf.open("a") as handle:
                handle.write(include)
        # Only TLS over TCP; the Unix socket (in the data directory) is for administration.
        (self.data / "pg_hba.conf").write_text(
            "local all all trust\n"
            "hostssl all all 127.0.0.1/32 scram-sha-256\n"
            "hostssl all all ::1/128 scram-sha-256\n"
            "hostnossl all all all reject\n"
        )

    def start(self) -> None:
        self._pg(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log_file), "-w", "-t", "30", "start"
        )

    def stop(self, mode: str = "fast") -> None:
        if self.is_running():
            self._pg("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")

    def is_running(self) -> bool:
        result = subprocess.run(
            [*run_as(), str(self.bindir / "pg_ctl"), "-D", str(self.data), "status"],
            capture_output=True,
            check=False,
        )
        return result.returncode == 0

    def wait_accepting(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"PostgreSQL on port {self.port} did not accept connections")

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)

    # -- administration ------------------------------------------------------------------

    def psql(self, sql: str, database: str = "postgres") -> str:
        return self._pg("psql", *self._psql_options(database), "-At", "-c", sql)

    def _psql_options(self, database: str) -> list[str]:
        """psql as the superuser, over the cluster's Unix socket, stopping at the first error."""
        socket = ["-h", str(self.data), "-p", str(self.port)]
        return ["-X", "-q", "-v", "ON_ERROR_STOP=1", *socket, "-U", "postgres", "-d", database]

    @contextmanager
    def holding(self, sql: str, database: str = "postgres") -> Iterator[None]:
        """`sql` run in a transaction that stays open until the block ends (a test holding a
        lock while the service works), then rolled back."""
        session = subprocess.Popen(
            [*run_as(), str(self.bindir / "psql"), *self._psql_options(database)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=self.base,
        )
        stdin, stdout = session.stdin, session.stdout
        if stdin is None or stdout is None:  # pragma: no cover - both are pipes above
            raise RuntimeError("psql has no pipes")
        stdin.write(f"BEGIN;\n{sql};\n\\echo held\n")
        stdin.flush()
        try:
            for line in stdout:  # command tags, then ours
                if line.strip() == "held":
                    break
            else:
                raise RuntimeError(f"psql did not run {sql!r}")
            yield
        finally:
            session.communicate("ROLLBACK;\n", timeout=30)

    def create_database(self, name: str) -> None:
        self.psql(f'CREATE DATABASE "{name}" OWNER {APP_USER}')

    def ensure_database(self, name: str) -> None:
        """Create `name` unless it exists (names come from our own config, not from users)."""
        query = f"SELECT 1 FROM pg_database WHERE datname = '{name}'"  # noqa: S608 - our own name
        if not self.psql(query).strip():
            self.create_database(name)

    def url(
        self,
        database: str = APP_USER,
        *,
        host: str = "localhost",
        user: str = APP_USER,
        password: str | None = None,
    ) -> str:
        secret = self.password if password is None else password
        return f"postgresql+asyncpg://{user}:{secret}@{host}:{self.port}/{database}"

    def _pg(self, program: str, *args: str) -> str:
        result = subprocess.run(
            [*run_as(), str(self.bindir / program), *args],
            capture_output=True,
            text=True,
            check=False,
            cwd=self.base,
        )
        if result.returncode != 0:
            log_tail = self.log_file.read_text()[-2000:] if self.log_file.exists() else ""
            raise RuntimeError(
                f"{program} failed ({result.returncode}): {result.stderr.strip()}\n{log_tail}"
            )
        return result.stdout
