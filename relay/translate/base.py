"""What the translator hands to its I/O shell, and the upstream connection states it tracks."""

from __future__ import annotations

from typing import Any

import attrs

UPSTREAM_NONE, UPSTREAM_SETUP_SENT, UPSTREAM_READY = "none", "setup_sent", "ready"


@attrs.frozen
class Connect:
    """Open the upstream socket and send this `setup` first (the upstream adds `setup.model`)."""

    setup: dict[str, Any]
    # The setup carries a resumption handle: the shell closes the current connection first (Gemini refuses a
    # resume while the old socket is open) and retries a failed resume before reporting `resume_failed`.
    resume: bool = False
    # The configured model to connect to, when not the session's own (a transcription session's choice).
    model: str | None = None


@attrs.frozen
class Close:
    """Close the client socket."""

    code: int
    reason: str


@attrs.define
class Output:
    client: list[bytes] = attrs.Factory(list)
    upstream: list[dict[str, Any]] = attrs.Factory(list)
    connect: Connect | None = None
    close: Close | None = None
