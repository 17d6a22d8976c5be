"""Tokens already verified, so a caller that reuses its token (as OAuth clients do until it
expires) pays for the full check once, not on every request.

An entry answers only while the token is unexpired (its `exp` plus the leeway, as the full check
allows) and while the provider still publishes the very key that verified it under that key id:
a key rotated out or a key set fetched again sends the token through the full check. Only tokens
that passed every check are kept; a refused token is checked in full each time. Bounded: when
full, the oldest entry makes room. Per worker, in memory, never shared.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from jwt import PyJWK

from app.auth.tokens import Principal, Verified


class VerifiedTokens:
    def __init__(
        self,
        max_entries: int,
        *,
        leeway_seconds: int,
        clock: Callable[[], float] = time.time,  # wall clock: `exp` is a wall-clock time
    ) -> None:
        self._max_entries = max_entries
        self._leeway_seconds = leeway_seconds
        self._clock = clock
        self._entries: dict[str, Verified] = {}
        # Answers so far, published on /metrics (auth_token_cache_total) once a second.
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, token: str, published: Callable[[str], PyJWK | None]) -> Principal | None:
        """The caller this token proved before, if it still would; `published` gives the key
        the provider publishes now under a key id."""
        entry = self._entries.get(token)
        if entry is not None:
            expired = self._clock() >= entry.expires_at + self._leeway_seconds
            if not expired and published(entry.kid) is entry.key:
                self.hits += 1
                return entry.principal
            del self._entries[token]
        self.misses += 1
        return None

    def put(self, token: str, verified: Verified) -> None:
        if self._max_entries == 0:
            return
        if len(self._entries) >= self._max_entries:
            del self._entries[next(iter(self._entries))]  # dicts keep insertion order
        self._entries[token] = verified
