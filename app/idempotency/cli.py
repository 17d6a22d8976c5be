"""The command line of `python -m app.idempotency` (usage in app/idempotency/__main__.py)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence

from sqlalchemy.engine import URL

from app.db.engine import build_engine
from app.db.session import write_sessions
from app.idempotency.store import prune_expired
from app.settings import Settings


def main(argv: Sequence[str], settings: Settings) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.idempotency")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("prune", help="delete the expired keys")
    parser.parse_args(argv)
    url = settings.database_url_object()
    if url is None:
        print("DATABASE_URL is not set.", file=sys.stderr)
        return 2
    deleted = asyncio.run(_prune(settings, url))
    print(json.dumps({"deleted": deleted}))
    return 0


async def _prune(settings: Settings, url: URL) -> int:
    engine = build_engine(url, settings.db, hide_parameters=settings.is_production)
    try:
        async with write_sessions(engine)() as session, session.begin():
            return await prune_expired(session)
    finally:
        await engine.dispose()
