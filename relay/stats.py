"""Counters of what the relay's bounds did, one set per server; the operations endpoints publish them."""

from __future__ import annotations

from collections import Counter

import attrs


@attrs.define
class Stats:
    # Clients closed with 1008 because they left more than `client_send_buffer` bytes unread.
    client_send_overflows: int = 0
    # Upstream connections dropped because Gemini left more than UPSTREAM_SEND_BUFFER bytes unread.
    upstream_send_overflows: int = 0
    # The most bytes any one client's writer held at once (a bound check: at most the buffer plus one batch).
    client_backlog_peak: int = 0
    # Connections to Gemini by (model, fresh|resume, ok|failed), one count per attempt.
    upstream: Counter[tuple[str, str, str]] = attrs.field(factory=Counter)
    # Gemini connections that failed, or ended before the client left, by (model, reason).
    upstream_failures: Counter[tuple[str, str]] = attrs.field(factory=Counter)
    # Rejections by limit: sessions (global), key_sessions, events_per_second, session_seconds, frame_size.
    limits: Counter[str] = attrs.field(factory=Counter)
