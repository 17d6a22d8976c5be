"""The fast tier's one real server: the production command with two Uvicorn workers on the
session's PostgreSQL; `/ready`, a write and a read back through a domain route (a test-only
route in a service generated without the example), then TERM: every worker disposes of its
pool, the master exits 0 and leaves no temporary files."""

from __future__ import annotations

import signal
import uuid
from pathlib import Path

import httpx

from devtools.pgcluster import PgCluster
from tests import notes
from tests.support import HAS_EXAMPLE, db_env, gunicorn

# (app, resource, the body of a new one): the example domain, or the test-only notes.
ROUND_TRIP = (
    ("app.main:app", "/api/v1/items", "name")
    if HAS_EXAMPLE
    else ("tests.server.fault_app:app", notes.PREFIX, "text")
)


def test_the_production_command_boots_serves_a_round_trip_and_stops_on_term(
    migrated: PgCluster, tmp_path: Path
) -> None:
    app, resource, field = ROUND_TRIP
    temp = tmp_path / "temp"
    temp.mkdir()
    env = db_env(migrated) | {"LOG__FORMAT": "json", "TMPDIR": str(temp)}
    with gunicorn(env, tmp_path / "gunicorn.log", workers=2, app=app) as server:
        ready = httpx.get(f"{server.base_url}/ready")
        assert ready.status_code == 200, ready.text
        value = f"smoke {uuid.uuid4()}"
        created = httpx.post(f"{server.base_url}{resource}", json={field: value})
        assert created.status_code == 201, created.text
        fetched = httpx.get(f"{server.base_url}{resource}/{created.json()['id']}")
        assert fetched.json()[field] == value
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=30) == 0
        disposed = [e for e in server.events() if e.get("event") == "database_disposed"]
    assert len(disposed) == 2
    assert list(temp.iterdir()) == []  # the workers' metric files went with the master
