"""Typed, grouped settings read from the environment once, at startup.

Nothing here runs at import. `load_settings()` builds the one `Settings` object and turns a
validation failure into a `SettingsError` whose message names every bad variable (by its
environment name) and why, without ever echoing a value: secrets stay secret even when they are
the thing that is wrong.

Top-level names are the fixed interface (`APP_ENV`, `DATABASE_URL`, `PORT`, `HOST`,
`WEB_CONCURRENCY`); tuning knobs live in groups, read as `GROUP__FIELD`
(`DB__POOL_SIZE`, `PROBES__READY_TIMEOUT`, ...). `.env.example` documents each one.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from app.otel_variables import otel_problems

# The service's name and slug (generated services get their own from the template).
SERVICE_NAME = "FastAPI Service"
SERVICE_SLUG = "fastapi-service"

AppEnv = Literal["development", "test", "production"]


class SslMode(StrEnum):
    """libpq's names for how hard to check the server (libpq "SSL Support" docs)."""

    DISABLE = "disable"
    REQUIRE = "require"
    VERIFY_CA = "verify-ca"
    VERIFY_FULL = "verify-full"


def _problem(var: str, message: str) -> PydanticCustomError:
    """An error that carries the environment variable it is about (see `_env_name`)."""
    return PydanticCustomError("setting", "{var}: " + message, {"var": var})


def _problems(found: list[tuple[str, str]]) -> PydanticCustomError:
    """Several problems as one error; `load_settings` lists them one per line again."""
    lines = [f"{var}: {message}" for var, message in found]
    return PydanticCustomError("settings", "{lines}", {"lines": "\n".join(lines)})


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class DatabaseSettings(_Group):
    """Pool, timeouts and TLS for the one PostgreSQL this service owns (`DB__*`)."""

    # Each Gunicorn worker has its own pool: the database sees
    # replicas x workers x (pool_size + max_overflow) connections (docs/facts.md: database pool).
    pool_size: Annotated[int, Field(ge=1, le=100)] = 10
    max_overflow: Annotated[int, Field(ge=0, le=100)] = 0
    # SQLAlchemy's 30 s default holds a request far past any sane deadline.
    pool_timeout: Annotated[float, Field(gt=0, le=60)] = 3.0
    pool_recycle: Annotated[int, Field(ge=-1)] = 1800
    # A full ping (3 round trips with asyncpg) before every checkout. Off: a free check for
    # connections the server closed (restarts, terminated backends) runs instead
    # (app/db/engine.py); on for networks that drop idle connections silently.
    pool_pre_ping: bool = False
    connect_timeout: Annotated[float, Field(gt=0, le=60)] = 3.0
    # asyncpg cancels the query client-side after this; without it a query over a partitioned
    # network waits forever (docs/facts.md: database pool).
    command_timeout: Annotated[float, Field(gt=0, le=600)] = 5.0
    # Server-side limit, below command_timeout so PostgreSQL normally stops the query itself.
    statement_timeout_ms: Annotated[int, Field(ge=0)] = 4000
    sslmode: SslMode = SslMode.REQUIRE
    sslrootcert: Path | None = None
    # Production refuses anything weaker than verify-full unless this is set on purpose.
    allow_insecure_tls: bool = False
    # Shown in pg_stat_activity: the service's slug.
    application_name: Annotated[str, Field(min_length=1, max_length=63)] = SERVICE_SLUG
    echo: bool = False
    # DATABASE_URL points at PgBouncer in transaction mode: no client-side pool (PgBouncer is
    # the pool), no statement caches, and a unique name for every prepared statement
    # (docs/facts.md: database pool; docs/operations.md). pool_size + max_overflow still bounds the
    # connections each worker opens at once (the gate).
    pgbouncer: bool = False
    # What a worker does when replicas x workers x (pool_size + max_overflow) exceeds the
    # server's max_connections - superuser_reserved_connections: log a warning, or refuse to
    # start (checked once at startup when the database answers; never blocks on it otherwise).
    pool_budget: Literal["warn", "refuse"] = "warn"

    @model_validator(mode="after")
    def _tls_needs_ca(self) -> Self:
        verifying = self.sslmode in (SslMode.VERIFY_CA, SslMode.VERIFY_FULL)
        if verifying and self.sslrootcert is None:
            raise _problem(
                "DB__SSLROOTCERT",
                f"DB__SSLMODE={self.sslmode} needs the CA file that signed the server "
                "certificate; set DB__SSLROOTCERT to its path",
            )
        if self.sslrootcert is not None and not self.sslrootcert.is_file():
            raise _problem("DB__SSLROOTCERT", "is not a readable file")
        if self.statement_timeout_ms and self.statement_timeout_ms / 1000 > self.command_timeout:
            raise _problem(
                "DB__STATEMENT_TIMEOUT_MS",
                "must not exceed DB__COMMAND_TIMEOUT (seconds), so the server stops a slow "
                "query before the client gives up on the connection",
            )
        return self


class BreakerSettings(_Group):
    """The database circuit breaker (`BREAKER__*`), one per worker process."""

    # Opens when this share of the last `window_size` calls failed, once `minimum_calls` ran.
    failure_rate: Annotated[float, Field(gt=0, le=1)] = 0.5
    window_size: Annotated[int, Field(ge=1, le=10_000)] = 20
    minimum_calls: Annotated[int, Field(ge=1, le=10_000)] = 10
    # Seconds an open circuit rejects calls before it lets trial calls through.
    open_wait: Annotated[float, Field(gt=0, le=600)] = 5.0
    # Trial calls allowed at once while half-open; all must succeed to close it.
    half_open_calls: Annotated[int, Field(ge=1, le=100)] = 3
    # Calls slower than this many ms count as failures too (0: off).
    slow_call_ms: Annotated[int, Field(ge=0)] = 0

    @model_validator(mode="after")
    def _window_holds_minimum(self) -> Self:
        if self.minimum_calls > self.window_size:
            raise _problem("BREAKER__MINIMUM_CALLS", "must not exceed BREAKER__WINDOW_SIZE")
        return self


class ProbeSettings(_Group):
    """Readiness check bounds (`PROBES__*`). Kubelet's default probe timeout is 1 s."""

    ready_timeout: Annotated[float, Field(gt=0, lt=1)] = 0.5
    # One database check serves every probe that arrives within this window.
    ready_cache_ttl: Annotated[float, Field(ge=0, le=30)] = 1.0


def _comma_list(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


CommaList = Annotated[list[str], NoDecode, BeforeValidator(_comma_list)]


class HttpSettings(_Group):
    """Request handling limits and hardening (`HTTP__*`)."""

    # A request still running after this many seconds is answered 504 and its handler is
    # cancelled. Gunicorn's `timeout` does not do this for async workers (it is a heartbeat).
    request_timeout: Annotated[float, Field(gt=0, le=3600)] = 10.0
    # Requests slower than this (ms, until the last body byte is sent) are logged as warnings.
    slow_request_ms: Annotated[int, Field(ge=1)] = 1000
    # Request bodies larger than this are refused with 413, counting the bytes actually received.
    max_body_bytes: Annotated[int, Field(ge=1)] = 1_048_576
    # Host header allow-list (comma-separated, "*.example.com" allowed). Required in production;
    # /health and /ready answer whatever the Host, because the kubelet sends the pod IP.
    allowed_hosts: CommaList = []
    # Browser origins allowed by CORS (comma-separated). Empty: CORS off.
    cors_origins: CommaList = []
    # Strict-Transport-Security max-age in seconds; 0 = no header. Set it when served over TLS.
    hsts_max_age: Annotated[int, Field(ge=0)] = 0
    # Serve /docs and /openapi.json; unset = on except in production.
    docs: bool | None = None
    # Client networks that may read /metrics (comma-separated CIDRs); empty = anyone who can
    # reach the port, so restrict it here or with a NetworkPolicy.
    metrics_allowed_networks: CommaList = []


class ServerSettings(_Group):
    """Gunicorn process management (`SERVER__*`); read by `gunicorn_conf.py` only."""

    # Heartbeat: a worker whose event loop is blocked this long is killed and replaced. It does
    # not bound a request (gunicorn settings docs); the app's own time limit does that.
    timeout: Annotated[int, Field(ge=2, le=3600)] = 30
    # How long SIGTERM waits for in-flight requests: at least the longest legitimate request.
    graceful_timeout: Annotated[int, Field(ge=1, le=3600)] = 30
    # Longer than the load balancer's idle timeout (AWS ALB: 60 s), or it reuses a connection
    # the server just closed and the client gets a 502 (docs/facts.md: server).
    keepalive: Annotated[int, Field(ge=1, le=3600)] = 75
    backlog: Annotated[int, Field(ge=1, le=65535)] = 2048
    # Comma-separated proxy addresses whose X-Forwarded-* headers are trusted ("*" = any).
    forwarded_allow_ips: str = "127.0.0.1,::1"
    # How many copies of this service run (pods, VMs): for the connection budget check.
    replicas: Annotated[int, Field(ge=1, le=1000)] = 1
    workers_min: Annotated[int, Field(ge=1, le=64)] = 2
    workers_max: Annotated[int, Field(ge=1, le=64)] = 8
    # Recycle a worker after this many requests (0: never), plus a random 0..jitter so the
    # workers do not all restart at once. A safety net against slow leaks in code a service adds
    # later; recycling drops no request (app/worker.py) and costs one worker boot per recycle.
    max_requests: Annotated[int, Field(ge=0, le=100_000_000)] = 50_000
    # Half the limit: at a few thousand requests/s per worker a 10 % jitter let both workers
    # recycle within one boot time of each other (~2 s here), and nothing was serving.
    max_requests_jitter: Annotated[int, Field(ge=0, le=100_000_000)] = 25_000
    # How long a stopping worker keeps idle keep-alive connections open, so a request already on
    # its way gets an answer (with `Connection: close`) instead of a reset (app/worker.py).
    drain_idle_seconds: Annotated[float, Field(ge=0, le=60)] = 1.0
    # How long a client may take to send a complete request head: from accept on a new
    # connection, from its first byte for each later request on a kept-alive one (the idle time
    # between requests is `keepalive`'s). Past it the connection is closed without an answer.
    # Uvicorn has none of its own: a client sending its head a byte at a time would hold a
    # connection as long as it likes. 0: off. Why 60 s: docs/operations.md (slow clients).
    header_timeout_seconds: Annotated[float, Field(ge=0, le=600)] = 60.0
    # The garbage collector's youngest-generation threshold in each worker (0: Python's 700);
    # the startup heap is frozen either way (app/worker.py `tune_gc`: the collector took 8 % of
    # a worker's time on a database read with the defaults).
    gc_threshold: Annotated[int, Field(ge=0, le=1_000_000)] = 5_000


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http(s) URL")
    return value


# Asymmetric algorithms only: "none" and HS* (a shared secret, or the public key misused as
# one: algorithm confusion) are refused (RFC 8725 3.1).
TokenAlgorithm = Literal[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"
]
# Plain http is allowed only to a provider on this machine, outside production, named exactly
# so. The URL is parsed, never matched as text: a look-alike host (localhost.evil.example,
# 127.0.0.1.evil.example, the user-info trick http://127.0.0.1@evil.example, "localhost." with
# its root dot), another loopback address (127.0.0.2) or an IPv4-mapped one (::ffff:127.0.0.1)
# is not loopback here.
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


class AuthSettings(_Group):
    """Who may call (`AUTH__*`): bearer tokens from an OpenID provider, or none."""

    # Unset: "none" in development and test; production must say which, on purpose.
    mode: Literal["none", "oidc"] | None = None
    # The provider's issuer URL exactly as its tokens' `iss` says it (kept as written: no
    # slash added), and where its discovery document lives.
    issuer: Annotated[str, AfterValidator(_http_url)] | None = None
    # This service's identifier at the provider: tokens' `aud` must contain it.
    audience: Annotated[str, Field(min_length=1)] | None = None
    # Default: the `jwks_uri` of the issuer's /.well-known/openid-configuration.
    jwks_url: Annotated[str, AfterValidator(_http_url)] | None = None
    # The CA certificates (PEM) that sign the provider's TLS certificate, for a provider behind
    # a company CA; unset: the system's trusted CAs.
    ca_file: Path | None = None
    algorithms: Annotated[list[TokenAlgorithm], NoDecode, BeforeValidator(_comma_list)] = [
        "RS256",
        "ES256",
    ]
    # Clock skew allowed on exp, nbf and iat, in seconds.
    leeway_seconds: Annotated[int, Field(ge=0, le=120)] = 30
    # A token signed with a key not seen yet fetches the key set again, at most this often:
    # a flood of made-up key ids cannot hammer the provider.
    jwks_refetch_seconds: Annotated[float, Field(ge=1, le=3600)] = 30.0
    # Tokens already verified, kept per worker until they expire so a caller reusing its token
    # is checked once (0: check every request in full). About 1.5 KB each.
    token_cache_size: Annotated[int, Field(ge=0, le=1_000_000)] = 4096

    @model_validator(mode="after")
    def _oidc_needs_a_provider(self) -> Self:
        if self.mode != "oidc":
            return self
        problems = []
        if self.issuer is None:
            problems.append(("AUTH__ISSUER", "is required when AUTH__MODE=oidc"))
        elif not _https_or_loopback(self.issuer):
            problems.append(("AUTH__ISSUER", "must be https (plain http only on loopback)"))
        if self.jwks_url is not None and not _https_or_loopback(self.jwks_url):
            problems.append(("AUTH__JWKS_URL", "must be https (plain http only on loopback)"))
        if self.ca_file is not None and not self.ca_file.is_file():
            problems.append(("AUTH__CA_FILE", "is not a readable file"))
        if self.audience is None:
            problems.append(("AUTH__AUDIENCE", "is required when AUTH__MODE=oidc"))
        if not self.algorithms:
            problems.append(("AUTH__ALGORITHMS", "must name at least one algorithm"))
        if problems:
            raise _problems(problems)
        return self

    def plain_http_urls(self) -> list[tuple[str, str]]:
        """The provider's URLs that production refuses: every one that is not https."""
        urls = (("AUTH__ISSUER", self.issuer), ("AUTH__JWKS_URL", self.jwks_url))
        return [
            (variable, "must be https in production")
            for variable, url in urls
            if self.mode == "oidc" and url is not None and urlsplit(url).scheme != "https"
        ]


def _https_or_loopback(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS)


class LogSettings(_Group):
    """Logging (`LOG__*`)."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # "auto": JSON in production, readable console lines elsewhere.
    format: Literal["auto", "json", "console"] = "auto"
    # One access line per request, written by the app (the servers' own access logs are off).
    access: bool = True
    # Share of successful /health and /ready requests that get an access line (0 to 1);
    # failing probes are always logged. Kubelet probes every few seconds per pod.
    probe_sample_rate: Annotated[float, Field(ge=0, le=1)] = 0.0


class IdempotencySettings(_Group):
    """Stored answers of requests made with an `Idempotency-Key` (`IDEMPOTENCY__*`;
    docs/adr/0012-idempotency-keys.md)."""

    # How long a key's answer is replayed; then a retry with it runs as a new request.
    keep_hours: Annotated[int, Field(ge=1, le=24 * 30)] = 24
    # The largest answer body kept: a larger answer fails its request (500) and writes nothing.
    max_answer_bytes: Annotated[int, Field(ge=1024, le=16 * 1024 * 1024)] = 65_536


# jobs-only
class JobsSettings(_Group):
    """The background-job worker (`JOBS__*`; docs/jobs.md)."""

    # The worker's own PostgreSQL URL: a direct connection, never PgBouncer's transaction mode,
    # which drops the LISTEN that wakes the worker. Unset: DATABASE_URL, unless DB__PGBOUNCER.
    database_url: SecretStr | None = None
    # JOBS__DATABASE_URL_FILE: read by load_settings into database_url (a secret's file).
    database_url_file: Path | None = Field(default=None, exclude=True)
    # /health and /metrics of a worker process.
    port: Annotated[int, Field(ge=1, le=65535)] = 8001
    # Jobs one worker process runs at once; its database pool has as many connections.
    concurrency: Annotated[int, Field(ge=1, le=200)] = 8
    # A job that runs longer is stopped and retried; a job may set its own (app/jobs/).
    timeout_seconds: Annotated[float, Field(gt=0, le=86_400)] = 60.0
    # After TERM: how long running jobs may finish before they are put back in the queue. At
    # least the longest job's timeout, so a deploy interrupts no job (the worker logs the jobs
    # that could be); the process manager waits longer still (docs/jobs.md: stopping).
    grace_seconds: Annotated[float, Field(ge=0, le=3600)] = 60.0
    # A job whose worker stops beating this long (killed, partitioned) runs again elsewhere.
    heartbeat_timeout_seconds: Annotated[float, Field(ge=2, le=3600)] = 30.0
    # Runs of a failing job before it is held as failed; waits between them double, up to a cap.
    max_attempts: Annotated[int, Field(ge=1, le=100)] = 5
    retry_initial_seconds: Annotated[float, Field(gt=0, le=3600)] = 1.0
    retry_max_seconds: Annotated[float, Field(gt=0, le=86_400)] = 300.0
    # Finished jobs' log and statistics rows older than this are deleted, hourly.
    history_retention_days: Annotated[int, Field(ge=1, le=3650)] = 7
    # The longest a worker waits before it looks at the queue again when nothing woke it. New
    # jobs wake it at once (NOTIFY on insert); a retry that comes due, a job put back by hand and
    # a dead worker's job do not (pgqueuer's trigger stays silent on updates): they wait for this.
    poll_seconds: Annotated[float, Field(ge=0.1, le=60)] = 1.0
    # Wait before the worker reconnects after losing the database.
    reconnect_seconds: Annotated[float, Field(gt=0, le=300)] = 2.0
    # Worker replicas, for the connection-budget check (like SERVER__REPLICAS for the web tier).
    replicas: Annotated[int, Field(ge=1, le=1000)] = 1

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        url = _parse_database_url(value.get_secret_value(), "JOBS__DATABASE_URL")
        return SecretStr(url.render_as_string(hide_password=False))

    @model_validator(mode="after")
    def _retries_nest(self) -> Self:
        if self.retry_initial_seconds > self.retry_max_seconds:
            raise _problem("JOBS__RETRY_INITIAL_SECONDS", "must not exceed JOBS__RETRY_MAX_SECONDS")
        return self


# /jobs-only

# Query parameters SQLAlchemy passes straight to asyncpg.connect(); libpq's names would crash
# there with TypeError (sqlalchemy#6275), so they are refused with the setting to use instead.
_URL_PARAMS_ALLOWED = frozenset({"host"})
_URL_PARAM_HINTS = {
    "sslmode": "set DB__SSLMODE instead",
    "sslrootcert": "set DB__SSLROOTCERT instead",
    "ssl": "set DB__SSLMODE instead",
}


class Settings(BaseSettings):
    """Everything the service reads from its environment."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_nested_delimiter="__",
        extra="ignore",
        frozen=True,
        hide_input_in_errors=True,
    )

    app_env: AppEnv = "development"
    database_url: SecretStr | None = None
    host: Annotated[str, Field(min_length=1)] = "0.0.0.0"  # noqa: S104 - containers must listen on all interfaces
    port: Annotated[int, Field(ge=1, le=65535)] = 8000
    web_concurrency: Annotated[int | None, Field(ge=1, le=64)] = None

    db: DatabaseSettings = DatabaseSettings()
    breaker: BreakerSettings = BreakerSettings()
    probes: ProbeSettings = ProbeSettings()
    http: HttpSettings = HttpSettings()
    server: ServerSettings = ServerSettings()
    log: LogSettings = LogSettings()
    auth: AuthSettings = AuthSettings()
    idempotency: IdempotencySettings = IdempotencySettings()
    jobs: JobsSettings = JobsSettings()  # jobs-only

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        url = _parse_database_url(value.get_secret_value())
        return SecretStr(url.render_as_string(hide_password=False))

    @model_validator(mode="after")
    def _production_rules(self) -> Self:
        """What production needs beyond valid values, all named in one message. (An after-
        validator runs once every field is valid, so these follow the field errors.)"""
        if not self.is_production:
            return self
        problems = []
        if self.database_url is None:
            problems.append(("DATABASE_URL", "is required when APP_ENV=production"))
        if self.db.sslmode != SslMode.VERIFY_FULL and not self.db.allow_insecure_tls:
            problems.append(
                (
                    "DB__SSLMODE",
                    f"is {self.db.sslmode} but production needs verify-full (with "
                    "DB__SSLROOTCERT); set DB__ALLOW_INSECURE_TLS=true to accept a weaker mode "
                    "on purpose",
                )
            )
        if self.auth.mode is None:
            problems.append(
                (
                    "AUTH__MODE",
                    "is required in production: oidc, or none to run without authentication "
                    "on purpose",
                )
            )
        problems += self.auth.plain_http_urls()
        if not self.http.allowed_hosts or "*" in self.http.allowed_hosts:
            problems.append(
                (
                    "HTTP__ALLOWED_HOSTS",
                    'must list this service\'s host names in production ("*" is not allowed)',
                )
            )
        if problems:
            raise _problems(problems)
        return self

    @model_validator(mode="after")
    def _timeouts_nest(self) -> Self:
        # Inner waits must end before outer ones, or the outer one fires with no clean answer.
        if self.db.command_timeout >= self.http.request_timeout:
            raise _problem(
                "DB__COMMAND_TIMEOUT",
                "must be below HTTP__REQUEST_TIMEOUT, so a slow query ends before the request "
                "time limit",
            )
        if self.server.graceful_timeout < self.http.request_timeout:
            raise _problem(
                "SERVER__GRACEFUL_TIMEOUT",
                "must be at least HTTP__REQUEST_TIMEOUT, so a shutdown lets in-flight requests "
                "finish",
            )
        return self

    @property
    def docs_enabled(self) -> bool:
        return self.http.docs if self.http.docs is not None else not self.is_production

    @property
    def is_production(self) -> bool:
        return self.app_env == "production"

    @property
    def auth_mode(self) -> Literal["none", "oidc"]:
        return self.auth.mode or "none"

    # jobs-only
    def jobs_database_url_object(self) -> URL:
        """The job worker's direct connection: JOBS__DATABASE_URL, else DATABASE_URL unless that
        goes through PgBouncer (its transaction mode drops the worker's LISTEN)."""
        if self.jobs.database_url is not None:
            return make_url(self.jobs.database_url.get_secret_value())
        if self.database_url is None:
            raise SettingsError(
                ["JOBS__DATABASE_URL: the worker needs a database (or DATABASE_URL)"]
            )
        if self.db.pgbouncer:
            raise SettingsError(
                [
                    "JOBS__DATABASE_URL: is required when DB__PGBOUNCER=true: the worker needs a "
                    "direct connection to PostgreSQL, not PgBouncer's"
                ]
            )
        return make_url(self.database_url.get_secret_value())

    # /jobs-only
    def database_url_object(self) -> URL | None:
        """The URL as SQLAlchemy's `URL`; render it with the password hidden when logging."""
        if self.database_url is None:
            return None
        return make_url(self.database_url.get_secret_value())


def _parse_database_url(raw: str, variable: str = "DATABASE_URL") -> URL:
    try:
        url = make_url(raw)
    except ArgumentError:
        raise _problem(variable, "is not a database URL") from None
    if url.drivername in ("postgres", "postgresql", "postgresql+asyncpg"):
        url = url.set(drivername="postgresql+asyncpg")
    else:
        raise _problem(
            variable,
            f"uses driver '{url.drivername}'; this service speaks PostgreSQL through asyncpg "
            "(postgresql:// or postgresql+asyncpg://)",
        )
    unknown = sorted(set(url.query) - _URL_PARAMS_ALLOWED)
    if unknown:
        hints = "; ".join(
            f"'{name}': {_URL_PARAM_HINTS.get(name, 'not supported here')}" for name in unknown
        )
        raise _problem(
            variable,
            f"has query parameters asyncpg would not understand ({hints})",
        )
    if not url.database:
        raise _problem(variable, "names no database")
    return url


class SettingsError(Exception):
    """The environment does not describe a runnable service; the message says how."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(
            f"Invalid configuration ({len(problems)} problem"
            f"{'s' if len(problems) != 1 else ''}):\n{lines}"
        )


def _env_name(loc: tuple[int | str, ...]) -> str:
    # A list entry's index is not part of the variable's name (OTEL_PROPAGATORS, not ..._0).
    return "__".join(part for part in loc if isinstance(part, str)).upper() or "(settings)"


def _describe(error: Mapping[str, Any]) -> str:
    if error["type"] in ("setting", "settings"):
        return str(error["msg"])  # each line already starts with its variable's name
    name = _env_name(tuple(error["loc"]))
    if error["type"] == "extra_forbidden":
        return f"{name}: is not a known setting"
    return f"{name}: {error['msg']}"


# Settings that can come from a file instead of the environment, as secrets should: a file
# named after the variable in SECRETS_DIR (Docker secrets, Kubernetes secret volumes), or
# `NAME_FILE=/path` (the official database images' convention).
SECRET_SETTINGS: tuple[str, ...] = ("database_url",)
SECRET_SETTINGS += ("jobs__database_url",)  # jobs-only
DEFAULT_SECRETS_DIR = "/run/secrets"


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from the environment (and `.env`, and secret files), plus explicit
    overrides.

    Raises `SettingsError` naming every bad variable; never includes a value.
    """
    from_files, problems = _secrets_from_files(os.environ)
    # OpenTelemetry's own variables: the SDK reads them, from the process environment only.
    problems += otel_problems(os.environ)
    secrets_dir = Path(os.environ.get("SECRETS_DIR") or DEFAULT_SECRETS_DIR)
    if secrets_dir.is_dir():
        overrides.setdefault("_secrets_dir", secrets_dir)
    try:
        settings = Settings(**(from_files | overrides))
    except ValidationError as exc:
        raise SettingsError(problems + _validation_problems(exc)) from None
    if problems:
        raise SettingsError(problems)
    return settings


def settings_or_exit() -> Settings:
    """For a command line: the settings, or exit with status 2 naming every bad variable. Call
    it before anything imports FastAPI, whose import reads OTEL_PROPAGATORS and fails on a bad
    one."""
    try:
        return load_settings()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(2) from None


def _validation_problems(exc: ValidationError) -> list[str]:
    return [
        line
        for error in exc.errors(include_url=False, include_input=False)
        for line in _describe(error).splitlines()
    ]


def _secrets_from_files(environ: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
    """`NAME_FILE` variables read: the values by field, and what was wrong with them."""
    found: dict[str, str] = {}
    problems = []
    for field in SECRET_SETTINGS:
        name = field.upper()
        path = environ.get(f"{name}_FILE")
        if not path:
            continue
        if environ.get(name):
            problems.append(f"{name}_FILE: {name} is set as well; set only one of them")
            continue
        try:
            found[field] = Path(path).read_text().strip()  # files usually end with a newline
        except OSError as exc:
            problems.append(f"{name}_FILE: cannot read {path} ({exc.strerror})")
    return _nested(found), problems


def _nested(flat: dict[str, str]) -> dict[str, Any]:
    """`{"group__field": v}` as `{"group": {"field": v}}`: pydantic-settings merges it with the
    group's other variables."""
    found: dict[str, Any] = {}
    for name, value in flat.items():
        group, _, field = name.rpartition("__")
        (found.setdefault(group, {}) if group else found)[field] = value
    return found
