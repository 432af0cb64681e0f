"""Identifiers in OpenAI's shapes: a prefix and 21 base62 characters (`event_…`, `item_…`, `resp_…`).

Every server event carries a fresh id, so ids are cheap: a random 13-character stem per session and
an 8-character base62 counter.  Unique within a session, unguessable across sessions.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

IdFactory = Callable[[str], str]


def _base62(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        n, r = divmod(n, 62)
        out.append(_ALPHABET[r])
    return "".join(reversed(out))


class SessionIds:
    """The id factory of one connection."""

    __slots__ = ("_n", "_stem")

    def __init__(self, stem: str | None = None) -> None:
        self._stem = stem if stem is not None else "".join(secrets.choice(_ALPHABET) for _ in range(13))
        self._n = 0

    def __call__(self, prefix: str) -> str:
        self._n += 1
        return prefix + self._stem + _base62(self._n, 8)


def counting_ids() -> SessionIds:
    """Deterministic ids for tests and property runs."""
    return SessionIds(stem="0" * 13)
