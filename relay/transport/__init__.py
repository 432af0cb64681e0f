"""The seam between a session and its two sockets: what the server, the sessions and the emulator speak to,
whichever WebSocket implementation is behind it.

`MessageSocket` is one open WebSocket; `IncomingConnection` an upgrade request a server accepts or rejects;
`Transport` a WebSocket implementation's server and client.  The implementations live beside this module,
each depending on it and never the reverse: `relay.transport.tws` (trio-websocket, the default) and
`relay.transport.sansio` (websockets' sans-IO core driven inline under trio, 2-3x the messages per core).
`relay.transport.registry.get_transport` picks one by name (`general_settings.transport`, `--transport`).
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Literal, Protocol

import attrs

# OpenAI accepts input_audio_buffer.append events of up to 15 MiB of base64; leave room for the JSON.
MAX_EVENT_SIZE = 16 * 1024 * 1024
# The transport's hard cap is higher so that an event a little too large gets an `error` event
# from the translator and the session goes on; only past this does the socket close with 1009.
MAX_MESSAGE_SIZE = 2 * MAX_EVENT_SIZE
# A 64 KiB receive buffer is a free 1.3x over the 4 KiB default (measured relaying audio frames on loopback).
RECEIVE_BUFFER_SIZE = 64 * 1024
CONNECT_TIMEOUT = 15.0
CLOSE_TIMEOUT = 5.0
# Keepalive: a peer silent this long is pinged, and one silent as long again counts as gone (a client that
# vanished without a FIN would otherwise hold its session, and its Gemini connection, until max_session_seconds).
PING_INTERVAL = 20.0
PING_TIMEOUT = 20.0

TransportName = Literal["trio-websocket", "websockets"]
TRANSPORT_NAMES: tuple[TransportName, ...] = ("trio-websocket", "websockets")
DEFAULT_TRANSPORT: TransportName = "trio-websocket"


class SocketClosed(Exception):
    """The peer closed the socket (or it broke); `code` and `reason` are what the peer said."""

    def __init__(self, code: int | None, reason: str | None) -> None:
        super().__init__(f"closed with {code}: {reason or ''}")
        self.code = code
        self.reason = reason or ""


class HandshakeFailed(Exception):
    """The upstream refused the WebSocket upgrade or could not be reached; `final`: no retry can mend it (a TLS
    failure, a malformed URL or header)."""

    def __init__(self, status: int | None, message: str, final: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.final = final


def tls_failed(exc: BaseException) -> bool:
    """Whether `exc` or what caused it is a TLS error (trio wraps them in BrokenResourceError)."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class MessageSocket(Protocol):
    async def get_message(self) -> str | bytes: ...

    async def get_messages(self) -> list[str | bytes]:
        """The next message and every one already received behind it (at least one; waits for the first)."""
        ...

    async def send_message(self, message: str | bytes) -> None: ...

    async def send_texts(self, messages: Sequence[bytes]) -> None:
        """Send each UTF-8 `message` as a text message, in order, written out together where the transport can."""
        ...

    def send_now(self, messages: Sequence[bytes]) -> int:
        """Start sending `messages` without waiting, when no write is under way: what the kernel takes at once
        is written.  Returns 0 when all of it was, the number of bytes still held when part was (the next
        `send_texts`, even an empty one, must follow to send them, and the socket writes nothing else
        before), or -1 when nothing was done (a write is under way, the stream is not plain TCP, or the
        socket is closing): then `send_texts` sends them as usual."""
        ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...


@attrs.frozen
class HandshakeRequest:
    """What the server needs to know about an incoming upgrade request."""

    path: str
    headers: tuple[tuple[str, str], ...]
    subprotocols: tuple[str, ...]
    remote: str = ""  # the client's address, host:port, for the logs

    def header(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None


class IncomingConnection(Protocol):
    """An upgrade request the server accepts (with an optional subprotocol) or rejects with an HTTP error."""

    request: HandshakeRequest

    async def accept(self, subprotocol: str | None = None) -> MessageSocket: ...

    async def reject(self, status: int, body: bytes, content_type: str = "application/json") -> None: ...


Handler = Callable[[IncomingConnection], Awaitable[None]]


OpenConnection = Callable[..., AbstractAsyncContextManager[MessageSocket]]
Serve = Callable[..., Awaitable[None]]


@attrs.frozen
class Transport:
    """One WebSocket implementation behind the seam: its server and its client."""

    name: TransportName
    serve: Serve
    open_connection: OpenConnection
