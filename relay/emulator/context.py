"""The context window of the emulator: its token limit and ``contextWindowCompression``.

A history entry costs what the prompt of a reply is charged for it (``history.prompt_tokens``):
one token per word of user text, ``ceil(ms / 40)`` per spoken turn and 258 per image; model turns
cost nothing. So the history's tokens are exactly the ``promptTokenCount`` the next reply reports.
"""

from __future__ import annotations

from typing import Any

import attrs

from .history import prompt_tokens
from .wire import INVALID_ARGUMENT, ProtocolError

__all__ = ["CONTEXT_EXCEEDED", "DEFAULT_CONTEXT_TOKENS", "Compression", "parse_compression", "slide_window"]

CONTEXT_EXCEEDED = (1007, "The input token count exceeds the maximum number of tokens allowed.")
# The input window of the current Live models (protocols.md 2.5): what an unset trigger is 80 % of
# when the emulator itself has no limit.
DEFAULT_CONTEXT_TOKENS = 131_072


@attrs.frozen
class Compression:
    """``contextWindowCompression`` as set up; None fields take their defaults from the limit."""

    trigger_tokens: int | None = None
    target_tokens: int | None = None

    def bounds(self, limit: int) -> tuple[int, int]:
        """(trigger, target): trigger defaults to 80 % of ``limit`` (or of ``DEFAULT_CONTEXT_TOKENS``
        when 0), target to half the trigger, as the service documents."""
        trigger = self.trigger_tokens
        if trigger is None:
            trigger = (limit or DEFAULT_CONTEXT_TOKENS) * 4 // 5
        target = self.target_tokens if self.target_tokens is not None else trigger // 2
        return trigger, target


def _token_count(value: Any) -> int | None:
    # proto int64 fields arrive as JSON numbers or as decimal strings.
    if value is None:
        return None
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ProtocolError.of(INVALID_ARGUMENT)


def parse_compression(value: Any) -> Compression | None:
    """The ``setup.contextWindowCompression`` object (camelCased), or None when absent."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ProtocolError.of(INVALID_ARGUMENT)
    window = value.get("slidingWindow") or {}
    if not isinstance(window, dict):
        raise ProtocolError.of(INVALID_ARGUMENT)
    return Compression(_token_count(value.get("triggerTokens")), _token_count(window.get("targetTokens")))


def slide_window(history: list[dict[str, Any]], total: int, target: int) -> int:
    """Drop the oldest entries of ``history`` (in place) until its ``total`` tokens are at most
    ``target``; returns how many entries went."""
    dropped = 0
    while dropped < len(history) and total > target:
        total -= sum(prompt_tokens([history[dropped]]))
        dropped += 1
    del history[:dropped]
    return dropped
