"""Authentication in the real server: Gunicorn, production mode, 2 workers, a real OpenID
provider on loopback that is down when the service starts."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from devtools.oidc_provider import AUDIENCE, Provider, openid_provider
from devtools.pgcluster import PgCluster
from tests.routes import service_with_test_routes
from tests.scopes import READS, refusals
from tests.server.test_metrics import FAULT_APP
from tests.support import db_env, gunicorn, make_settings, wait_for

pytestmark = pytest.mark.slow

PRIVATE = "/_test/private"
# A worker retries the provider every 5 s until it has its keys (app/auth/keys.py).
RETRY_S = 5.0


def production_env(migrated: PgCluster, provider: Provider) -> dict[str, str]:
    return db_env(migrated) | {
        "APP_ENV": "production",
        "HTTP__ALLOWED_HOSTS": "127.0.0.1",
        "LOG__FORMAT": "json",
        "AUTH__MODE": "oidc",
        "AUTH__ISSUER": provider.issuer,
        "AUTH__CA_FILE": str(provider.ca_file),
        "AUTH__AUDIENCE": AUDIENCE,
    }


def test_every_guarded_route_refuses_a_token_without_its_scopes(
    migrated: PgCluster, tmp_path: Path
) -> None:
    """Every route of every domain, the test-only ones included, through the real server: a
    write refuses a token with every read scope, a read a token with every other scope."""
    served = service_with_test_routes(make_settings(None))  # the routes FAULT_APP serves
    with (
        openid_provider() as provider,
        gunicorn(production_env(migrated, provider), tmp_path / "g.log", app=FAULT_APP) as server,
    ):
        wait_for(f"{server.base_url}{PRIVATE}", status=401)  # its keys are known
        for refusal in refusals(served):
            bearer = {"authorization": f"Bearer {provider.token(scope=refusal.token_scope)}"}
            answer = httpx.request(
                refusal.method,
                f"{server.base_url}{refusal.path}",
                json=None if refusal.method in READS else {},
                headers=bearer,
            )
            assert answer.status_code == 403, refusal
            assert 'error="insufficient_scope"' in answer.headers["www-authenticate"], refusal


def test_tokens_in_production_with_a_provider_down_at_startup(
    migrated: PgCluster, tmp_path: Path
) -> None:
    with openid_provider() as provider:
        provider.down = True
        with gunicorn(
            production_env(migrated, provider), tmp_path / "gunicorn.log", workers=2, app=FAULT_APP
        ) as server:
            url = f"{server.base_url}{PRIVATE}"
            wait_for(f"{server.base_url}/ready")  # ready without the provider
            token = provider.token(scope="notes:read")
            bearer = {"authorization": f"Bearer {token}"}
            assert httpx.get(url, headers=bearer).status_code == 503
            provider.down = False
            # Both workers recover by themselves: each logs its first key set. (A run of 200s
            # alone proves one worker only: Gunicorn's workers do not take turns.)
            deadline = time.monotonic() + 2 * RETRY_S + 5
            while sum(event.get("event") == "jwks_fetched" for event in server.events()) < 2:
                assert time.monotonic() < deadline, "the workers did not get the keys"
                time.sleep(0.1)
            for _ in range(10):  # a new connection each: either worker may answer
                assert httpx.get(url, headers=bearer).status_code == 200
            assert httpx.get(url).status_code == 401
            forged = provider.token(scope="notes:read", aud="api://someone-else")
            assert httpx.get(url, headers={"authorization": f"Bearer {forged}"}).status_code == 401
            assert httpx.post(url, headers=bearer).status_code == 403
            assert httpx.get(f"{server.base_url}/health").status_code == 200  # never a token
            served = httpx.get(url, headers=bearer)
            assert served.status_code == 200
            request_id = served.headers["x-request-id"]
        output = server.output()
        events = server.events()
    assert token not in output
    assert forged not in output
    [access] = [e for e in events if e.get("request_id") == request_id and "status" in e]
    assert (access["subject"], access["client_id"]) == ("user-1234", "client-abc")
