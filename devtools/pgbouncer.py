"""A throwaway PgBouncer in transaction mode in front of a `PgCluster`, for the tests.

Debian's package (1.18 on Debian 12). TLS on both sides: clients get the cluster's own
`localhost` certificate (so `verify-full` with the cluster's CA works through PgBouncer too), and
PgBouncer verifies the server the same way. Runs as the PostgreSQL server user when the tests run
as root (PgBouncer refuses root).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from devtools.pgcluster import APP_USER, PgCluster, chown_to_server_user, run_as
from devtools.ports import free_port


@dataclass(frozen=True)
class PgBouncer:
    cluster: PgCluster
    port: int
    log_file: Path

    def url(self, database: str = APP_USER) -> str:
        return self.cluster.url(database).replace(f":{self.cluster.port}/", f":{self.port}/")


def _config(cluster: PgCluster, port: int, base: Path, database: str) -> str:
    return f"""[databases]
{database} = host=localhost port={cluster.port} dbname={database}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir = {base}
logfile = {base / "pgbouncer.log"}
pidfile = {base / "pgbouncer.pid"}
auth_type = scram-sha-256
auth_file = {base / "userlist.txt"}
pool_mode = transaction
default_pool_size = 4
; After a failed server login PgBouncer waits this long before trying again (default 15 s): a
; restarted PostgreSQL would stay unreachable through it for that long.
server_login_retry = 1
; Clients waiting for a server connection get an error after this instead of hanging (default
; 120 s); below the service's request time limit.
query_wait_timeout = 5
max_client_conn = 200
server_tls_sslmode = verify-full
server_tls_ca_file = {cluster.ca_file}
client_tls_sslmode = require
client_tls_cert_file = {cluster.data / "server.crt"}
client_tls_key_file = {cluster.data / "server.key"}
; 1.18 refuses startup parameters it does not track; statement_timeout is set per role instead
; (docs/operations.md: PgBouncer).
ignore_startup_parameters = statement_timeout
"""


@contextmanager
def pgbouncer(cluster: PgCluster, database: str = APP_USER) -> Iterator[PgBouncer]:
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    base = cluster.base / "pgbouncer"
    base.mkdir(exist_ok=True)
    port = free_port()
    (base / "userlist.txt").write_text(f'"{APP_USER}" "{cluster.password}"\n')
    ini = base / "pgbouncer.ini"
    ini.write_text(_config(cluster, port, base, database))
    for path in (base, base / "userlist.txt", ini):
        chown_to_server_user(path)
    (base / "userlist.txt").chmod(0o600)
    process = subprocess.Popen(
        [*run_as(), binary, str(ini)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    bouncer = PgBouncer(cluster, port, base / "pgbouncer.log")
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    log = bouncer.log_file.read_text() if bouncer.log_file.exists() else ""
                    raise RuntimeError(f"pgbouncer did not start:\n{log[-2000:]}") from None
                time.sleep(0.05)
        yield bouncer
    finally:
        process.terminate()
        process.wait(timeout=10)
