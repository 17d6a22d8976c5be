"""A write route's opt-in to the `Idempotency-Key` header: `_: Idempotent` (the key is optional)
or `_: IdempotentRequired` (a request without one is a 400), on a router whose routes are
`IdempotentRoute`s.

With a key, the dependency claims it after authentication and before the route runs: a retry of
a finished request gets the stored answer (`Idempotent-Replayed: true`) and runs nothing; the same
key on another request is a 422; a retry while the first still runs is a 409. The route class
stores the route's answer on the request's session, so it commits with the route's writes or not
at all (docs/adr/0012-idempotency-keys.md).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Depends, Header, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.dependency import caller_of
from app.db.session import DbSession
from app.errors import PROBLEM_JSON, AppError
from app.idempotency.keys import KEY_PATTERN, InvalidKey, fingerprint, parse_key
from app.idempotency.store import Answer, KeyInUse, claim, save
from app.settings import IdempotencySettings
from app.state import resources

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
_STATE_KEY = "idempotency"
# The headers a client needs to read a replayed answer.
KEPT_HEADERS = frozenset({"content-type", "location"})


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


class AnswerNotKept(RuntimeError):
    """The route's answer cannot be stored, so its writes must not commit: a retry would
    repeat them."""


class _Replay(Exception):  # a signal to the route class, not an error
    def __init__(self, answer: Answer) -> None:
        super().__init__("replay")
        self.answer = answer


@dataclass(frozen=True, slots=True)
class _Claimed:
    session: AsyncSession
    scope: str
    key: str
    fingerprint: bytes
    settings: IdempotencySettings

    async def keep(self, response: Response) -> None:
        body = getattr(response, "body", None)
        if not isinstance(body, bytes):
            raise AnswerNotKept("An idempotent route must answer with a body, not a stream.")
        if len(body) > self.settings.max_answer_bytes:
            raise AnswerNotKept(
                f"The answer has {len(body)} bytes, more than IDEMPOTENCY__MAX_ANSWER_BYTES."
            )
        headers = {k: v for k, v in response.headers.items() if k in KEPT_HEADERS}
        await save(
            self.session,
            self.scope,
            self.key,
            fingerprint=self.fingerprint,
            answer=Answer(response.status_code, headers, body),
            keep=timedelta(hours=self.settings.keep_hours),
        )


class IdempotencyKey:
    """The dependency behind `Idempotent` and `IdempotentRequired`."""

    def __init__(self, *, required: bool) -> None:
        self.required = required

    async def __call__(
        self,
        request: Request,
        session: DbSession,
        header: Annotated[
            str | None,
            Header(
                alias=HEADER,
                description="Makes a retry of this request safe: a quoted string or a token of "
                "1 to 255 characters, new for each new request (a UUID).",
                # In the document only: a malformed key is this route's 400, not FastAPI's 422.
                json_schema_extra={"pattern": KEY_PATTERN},
            ),
        ] = None,
    ) -> None:
        key = self._key(header)
        if key is None:
            return
        scope = caller_of(request).subject
        request_print = await _fingerprint_of(request)
        try:
            stored = await claim(session, scope, key)
        except KeyInUse:
            raise IdempotencyKeyInUse from None
        if stored is not None:
            if stored.fingerprint != request_print:
                raise IdempotencyKeyReused
            raise _Replay(stored.answer)
        settings = resources(request).settings.idempotency
        claimed = _Claimed(session, scope, key, request_print, settings)
        setattr(request.state, _STATE_KEY, claimed)

    def _key(self, header: str | None) -> str | None:
        """The header's key; None without one where the route does not require it."""
        if header is None:
            if self.required:
                raise InvalidIdempotencyKey(f"This request needs an {HEADER} header.")
            return None
        try:
            return parse_key(header)
        except InvalidKey as exc:
            raise InvalidIdempotencyKey(str(exc)) from None


async def _fingerprint_of(request: Request) -> bytes:
    """Method, concrete path with its query, and body bytes."""
    path, query = request.scope["path"], request.scope["query_string"].decode("latin-1")
    target = f"{path}?{query}" if query else path
    return fingerprint(request.method, target, await request.body())


Idempotent = Annotated[None, Depends(IdempotencyKey(required=False))]
IdempotentRequired = Annotated[None, Depends(IdempotencyKey(required=True))]

_problem: dict[str, Any] = {"content": {PROBLEM_JSON: {}}}
_RESPONSES: dict[int, dict[str, Any]] = {
    400: _problem | {"description": f"Malformed (or, where required, missing) {HEADER}"},
    409: _problem
    | {
        "description": f"A request with this {HEADER} is still running",
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
    },
    422: _problem | {"description": f"This {HEADER} was used for a different request"},
}


def _uses_a_key(dependant: Dependant) -> bool:
    return any(
        isinstance(sub.call, IdempotencyKey) or _uses_a_key(sub) for sub in dependant.dependencies
    )


class IdempotentRoute(APIRoute):
    """A route class that replays stored answers and stores the route's answer before the
    request commits; routes that take no key are left as they are."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        if _uses_a_key(self.dependant):
            self.responses = _with_key_responses(self.responses)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if not _uses_a_key(self.dependant):
            return handler

        async def idempotent_handler(request: Request) -> Response:
            try:
                response = await handler(request)
            except _Replay as replay:
                answer = replay.answer
                headers = answer.headers | {REPLAYED_HEADER: "true"}
                return Response(answer.body, status_code=answer.status, headers=headers)
            claimed: _Claimed | None = getattr(request.state, _STATE_KEY, None)
            if claimed is not None:
                await claimed.keep(response)
            return response

        return idempotent_handler


def _with_key_responses(declared: dict[int | str, dict[str, Any]]) -> dict[int | str, Any]:
    """The route's own responses plus the key's; a status both declare gets both descriptions."""
    merged = dict(declared)
    for status, response in _RESPONSES.items():
        if (own := merged.get(status)) is None:
            merged[status] = response
        else:
            description = f"{own.get('description', '')}; or: {response['description']}"
            merged[status] = response | own | {"description": description}
    return merged
