# syntax=docker/dockerfile:1
# Build stage: dependencies from uv.lock only, into /app/.venv.
FROM python:3.11-slim-bookworm AS build
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
WORKDIR /app
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project
COPY app ./app
COPY migrations ./migrations
COPY gunicorn_conf.py ./

# Runtime stage: no compilers, no uv, a numeric non-root user.
FROM python:3.11-slim-bookworm
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PATH="/app/.venv/bin:$PATH" \
    APP_ENV=production HOST=0.0.0.0 PORT=8000
WORKDIR /app
COPY --from=build /app /app
COPY pyproject.toml ./
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=2s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('PORT', '8000')}/health\", timeout=1)"]
CMD ["gunicorn", "-c", "gunicorn_conf.py", "app.main:app"]
