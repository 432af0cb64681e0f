"""Identifiers in OpenAI's shapes: a prefix and 21 base62 characters (`event_…`, `item_…`, `resp_…`).

Every server event carries a fresh id, so ids are cheap: a random 13-character stem per session and
an 8-character base62 counter.  Unique within a session, unguessable across sessions.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

IdFactory = Callable[[str], str]


_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]  # two base62 digits per lookup
_PAIR = len(_PAIRS)


def _base62_8(n: int) -> str:
    """`n` as 8 base62 digits (wrapping past 62**8, which no session reaches)."""
    n, d = divmod(n, _PAIR)
    n, c = divmod(n, _PAIR)
    a, b = divmod(n, _PAIR)
    return _PAIRS[a % _PAIR] + _PAIRS[b] + _PAIRS[c] + _PAIRS[d]


class SessionIds:
    """The id factory of one connection."""

    __slots__ = ("_n", "_stem")

    def __init__(self, stem: str | None = None) -> None:
        self._stem = stem if stem is not None else "".join(secrets.choice(_ALPHABET) for _ in range(13))
        self._n = 0

    def __call__(self, prefix: str) -> str:
        self._n += 1
        return prefix + self._stem + _base62_8(self._n)


def counting_ids() -> SessionIds:
    """Deterministic ids for tests and property runs."""
    return SessionIds(stem="0" * 13)
