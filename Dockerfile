# The production image: `docker build -t fastapi-service .` (deploy/README.md).
# No `# syntax=` line: it would make BuildKit pull a frontend image, which fails without a
# registry; the built-in frontend already has the cache and secret mounts used here.

# Base images written out in the FROM lines, not as build arguments: Dependabot proposes their
# updates only there. Behind a registry mirror, change these lines (deploy/README.md).
FROM ghcr.io/astral-sh/uv:0.13.9 AS uv

# Build stage: the runtime dependencies from uv.lock only (no dev group), into /app/.venv.
FROM python:3.11-slim-bookworm AS build
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
WORKDIR /app
COPY pyproject.toml uv.lock ./
# Behind a TLS-intercepting proxy, pass its CA bundle as the optional `ca-certificates` secret:
# it is mounted for this step only and never stored in a layer.
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=secret,id=ca-certificates,target=/run/secrets/ca-certificates \
    if [ -s /run/secrets/ca-certificates ]; then export SSL_CERT_FILE=/run/secrets/ca-certificates; fi \
    && uv sync --frozen --no-dev --no-install-project
COPY app ./app
COPY migrations ./migrations
COPY gunicorn_conf.py ./
# Bytecode now: the runtime filesystem is read-only, so Python could not cache it there.
RUN python -m compileall -q app migrations gunicorn_conf.py

# Runtime stage: no compilers, no uv, a numeric non-root user (Kubernetes runAsNonRoot can
# verify a numeric USER only). Writes go to /tmp (tmpfs or emptyDir: metrics files) and
# /dev/shm (Gunicorn's heartbeat); the rest can be mounted read-only.
FROM python:3.11-slim-bookworm
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PATH="/app/.venv/bin:$PATH" \
    APP_ENV=production HOST=0.0.0.0 PORT=8000
WORKDIR /app
COPY --from=build /app /app
USER 10001:10001
EXPOSE 8000
# No curl in a slim image: the interpreter that is already there does the request.
HEALTHCHECK --interval=10s --timeout=2s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('PORT', '8000')}/health\", timeout=1)"]
CMD ["gunicorn", "-c", "gunicorn_conf.py", "app.main:app"]
