"""`Idempotent`: a write route's opt-in to the `Idempotency-Key` header.

The route takes `_: Idempotent` and its router uses `IdempotentRoute`. With a key, the
dependency claims it before the route runs: a retry of a finished request gets the stored
answer (`Idempotent-Replayed: true`) and runs nothing; the same key on another request is a
422; a retry while the first still runs is a 409. The route class stores the route's answer on
the request's session, so it commits with the route's writes (docs/adr/0012-idempotency-keys.md).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.dependency import principal
from app.auth.tokens import Principal
from app.db.session import DbSession
from app.errors import AppError
from app.idempotency.keys import InvalidKey, fingerprint, parse_key
from app.idempotency.store import Answer, claim, find, save

HEADER = "Idempotency-Key"
STATE_KEY = "idempotency"
KEEP = timedelta(hours=24)
# The headers a client needs to read a replayed answer.
KEPT_HEADERS = ("content-type", "location")


class InvalidIdempotencyKey(AppError):
    status = 400
    slug = "invalid-idempotency-key"


class IdempotencyKeyInUse(AppError):
    status = 409
    slug = "idempotency-key-in-use"

    def __init__(self) -> None:
        super().__init__(
            "A request with this Idempotency-Key is still being processed; retry later.",
            headers={"Retry-After": "1"},
        )


class IdempotencyKeyReused(AppError):
    status = 422
    slug = "idempotency-key-reused"

    def __init__(self) -> None:
        super().__init__("This Idempotency-Key was used for a different request.")


class Replayed(Exception):
    def __init__(self, answer: Answer) -> None:
        super().__init__("replayed")
        self.answer = answer


@dataclass(frozen=True, slots=True)
class Claimed:
    session: AsyncSession
    scope: str
    key: str
    fingerprint: bytes

    async def keep(self, response: Response) -> None:
        headers = {k: v for k, v in response.headers.items() if k in KEPT_HEADERS}
        answer = Answer(response.status_code, headers, bytes(response.body))
        await save(
            self.session,
            self.scope,
            self.key,
            fingerprint=self.fingerprint,
            answer=answer,
            keep=KEEP,
        )


async def _idempotent(
    request: Request, session: DbSession, caller: Annotated[Principal, Depends(principal)]
) -> None:
    header = request.headers.get(HEADER)
    if header is None:
        return
    try:
        key = parse_key(header)
    except InvalidKey as exc:
        raise InvalidIdempotencyKey(str(exc)) from None
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    claimed = Claimed(
        session, caller.subject, key, fingerprint(request.method, target, await request.body())
    )
    if not await claim(session, claimed.scope, key):
        raise IdempotencyKeyInUse
    if (found := await find(session, claimed.scope, key)) is not None:
        if found.fingerprint != claimed.fingerprint:
            raise IdempotencyKeyReused
        raise Replayed(Answer(found.status, found.headers, found.body))
    setattr(request.state, STATE_KEY, claimed)


Idempotent = Annotated[None, Depends(_idempotent)]


class IdempotentRoute(APIRoute):
    """Replays stored answers, and stores the route's answer before the request commits."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def idempotent_handler(request: Request) -> Response:
            try:
                response = await handler(request)
            except Replayed as replay:
                answer = replay.answer
                headers = answer.headers | {"Idempotent-Replayed": "true"}
                return Response(answer.body, status_code=answer.status, headers=headers)
            claimed: Claimed | None = getattr(request.state, STATE_KEY, None)
            if claimed is not None:
                await claimed.keep(response)
            return response

        return idempotent_handler
