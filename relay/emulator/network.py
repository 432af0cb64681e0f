"""What the emulator does below the WebSocket protocol: HTTP refusals, dropped TCP connections and
upgrades that are never answered.

Gemini refuses upgrades with Google-shaped JSON errors, networks drop connections without a close
frame, and an overloaded front end may take a connection and never answer it; the relay must
survive all three, so the emulator can do each on request (``Emulator.handshake_faults``).
"""

from __future__ import annotations

import http
from typing import Any

import orjson
import trio

__all__ = ["DEAD_HANDSHAKE", "HANDSHAKE_ERRORS", "STALLED_HANDSHAKE", "drop_connection", "error_body", "fault_body"]

#: A ``handshake_faults`` entry that closes the TCP connection at once, without an answer.
DEAD_HANDSHAKE = 0
#: A ``handshake_faults`` entry that reads the upgrade request and never answers it: the TCP connection
#: stays open (until the client gives up, or the emulator stops), so the client's connect timeout runs out.
STALLED_HANDSHAKE = -1

#: HTTP status → (google.rpc status, message), as Google's front ends answer a refused upgrade.
HANDSHAKE_ERRORS = {
    401: ("UNAUTHENTICATED", "Request had invalid authentication credentials."),
    403: ("PERMISSION_DENIED", "The caller does not have permission."),
    404: ("NOT_FOUND", "Requested entity was not found."),
    429: ("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
    500: ("INTERNAL", "Internal error encountered."),
    503: ("UNAVAILABLE", "The service is currently unavailable."),
}

# The wrappers between a session's socket object and its trio stream, in the order to follow:
# SeamWebSocket._sock, relay.transport's TrioWebsocketSocket._ws / TrioWebsocketIncoming._request,
# trio-websocket's WebSocketRequest._connection; the stream itself is ``_stream`` everywhere.
_WRAPPERS = ("_sock", "_ws", "_request", "_connection")


def error_body(code: int, status: str, message: str) -> bytes:
    """A JSON error body in the shape of Google's HTTP errors, which clients print."""
    return orjson.dumps({"error": {"code": code, "message": message, "status": status}})


def fault_body(code: int) -> bytes:
    """The body of an injected handshake refusal with HTTP status ``code``."""
    if code in HANDSHAKE_ERRORS:
        status, message = HANDSHAKE_ERRORS[code]
    else:
        try:
            message = http.HTTPStatus(code).phrase
        except ValueError:
            message = "Error"
        status = "UNKNOWN"
    return error_body(code, status, message)


def _stream_of(obj: Any) -> trio.abc.Stream | None:
    # The transports give no public way to drop a connection without a close handshake, so this
    # reaches for the stream under the wrappers; a layout it does not know yields None.
    for _ in range(len(_WRAPPERS) + 1):
        stream = getattr(obj, "_stream", None)
        if isinstance(stream, trio.abc.Stream):
            return stream
        inner = next((getattr(obj, name) for name in _WRAPPERS if hasattr(obj, name)), None)
        if inner is None:
            return None
        obj = inner
    return None


async def drop_connection(obj: Any) -> None:
    """Close the TCP connection under a socket or an upgrade request at once: no close frame, no
    HTTP answer. The peer sees the connection end (1006 for a WebSocket)."""
    stream = _stream_of(obj)
    if stream is None:
        raise RuntimeError(f"emulator: cannot find the stream under {type(obj).__name__}")
    await trio.aclose_forcefully(stream)
