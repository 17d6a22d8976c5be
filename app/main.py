"""Composition root for the servers: `gunicorn -c gunicorn_conf.py app.main:app`.

The only module that does work at import, because that is what the server asks for. Tests and
tools call `app.factory.create_app(settings)` instead.
"""

from __future__ import annotations

from app.factory import create_app

app = create_app()
