"""Every route decides who may call it: it names the scopes a token needs, or it is public on
purpose. A route added without a decision fails here, in `make test`."""

from __future__ import annotations

from fastapi import APIRouter, Request, WebSocket
from starlette.responses import PlainTextResponse
from starlette.routing import Host, Route, WebSocketRoute

from app.auth.dependency import requires
from app.auth.policy import PUBLIC, undecided
from app.factory import add_routes, create_app
from tests.routes import service_with_test_routes
from tests.scopes import READS, refusals
from tests.support import make_settings


def test_every_route_of_the_service_and_its_test_routes_decides_who_may_call_it() -> None:
    app = service_with_test_routes(make_settings(None, http={"docs": True}))
    assert undecided(app) == []


def test_the_policy_sees_guarded_reads_and_writes_whatever_the_domains() -> None:
    """Not a vacuous pass: with or without the example domain, there are routes to check."""
    found = refusals(service_with_test_routes(make_settings(None)))
    assert {r.method for r in found if r.method in READS}
    assert {r.method for r in found if r.method not in READS}
    for refusal in found:
        assert not refusal.needs <= refusal.token_scopes, refusal


def test_a_route_without_a_decision_is_named() -> None:
    app = create_app(make_settings(None))
    forgot = APIRouter(prefix="/orders")

    @forgot.get("")
    async def list_orders() -> list[str]:
        return []

    @forgot.delete("/{order_id}", dependencies=[requires()])  # a token, but no scope
    async def delete_order(order_id: int) -> None:
        return None

    @forgot.post("", dependencies=[requires("orders:write")], openapi_extra=PUBLIC)
    async def both(order: str) -> None:  # public and guarded at once: a contradiction
        return None

    @forgot.api_route("/{order_id}/notes", methods=["GET", "POST"])
    async def notes(order_id: int) -> None:
        return None

    add_routes(app, forgot)
    named = [route for route in undecided(app) if " /orders" in route]
    assert named == [
        "GET /orders",
        "DELETE /orders/{order_id}",
        "POST /orders",
        "GET,POST /orders/{order_id}/notes",
    ]


def test_a_route_fastapi_does_not_describe_is_named_unless_it_is_an_api_document() -> None:
    """Starlette's own routes carry no FastAPI dependencies: only the API documents FastAPI
    serves itself may be among them."""
    app = create_app(make_settings(None, http={"docs": True}))

    async def endpoint(request: Request) -> PlainTextResponse:
        return PlainTextResponse("")

    async def socket(websocket: WebSocket) -> None:
        await websocket.close()

    app.router.routes += [
        Route("/raw", endpoint),
        WebSocketRoute("/live", socket),
        Host("admin.example.com", app=PlainTextResponse("")),
    ]
    assert undecided(app) == ["Route /raw", "WebSocketRoute /live", "Host"]
