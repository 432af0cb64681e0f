"""The seam between a session and its two sockets, and the trio-websocket transport behind it.

The session, server and upstream code speak only to `MessageSocket`, `IncomingConnection` and the
`Transport` chosen by `general_settings.transport` / `--transport`: trio-websocket (here, the default)
or websockets' sans-IO core driven inline under trio (`relay.transport_ws`, 2-3x the messages per core).
Nothing outside this module imports trio_websocket.
"""

from __future__ import annotations

import math
import os
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from typing import Literal, NoReturn, Protocol

import attrs
import trio
import trio_websocket as tws
from wsproto.events import TextMessage

# OpenAI accepts input_audio_buffer.append events of up to 15 MiB of base64; leave room for the JSON.
MAX_EVENT_SIZE = 16 * 1024 * 1024
# The transport's hard cap is higher so that an event a little too large gets an `error` event
# from the translator and the session goes on; only past this does the socket close with 1009.
MAX_MESSAGE_SIZE = 2 * MAX_EVENT_SIZE
# A 64 KiB receive buffer is a free 1.3x over the 4 KiB default (shared/reference/transport.md).
RECEIVE_BUFFER_SIZE = 64 * 1024
CONNECT_TIMEOUT = 15.0
CLOSE_TIMEOUT = 5.0

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
    """The upstream refused the WebSocket upgrade or could not be reached."""

    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class MessageSocket(Protocol):
    async def get_message(self) -> str | bytes: ...

    async def get_messages(self) -> list[str | bytes]:
        """The next message and every one already received behind it (at least one; waits for the first)."""
        ...

    async def send_message(self, message: str | bytes) -> None: ...

    async def send_texts(self, messages: Sequence[bytes]) -> None:
        """Send each UTF-8 `message` as a text message, in order, written out together where the transport can."""
        ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...


@attrs.frozen
class HandshakeRequest:
    """What the server needs to know about an incoming upgrade request."""

    path: str
    headers: tuple[tuple[str, str], ...]
    subprotocols: tuple[str, ...]

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


def write_now(stream: trio.abc.Stream, data: bytes) -> bytes:
    """Write what the kernel takes at once to a plain TCP stream, without a trip through trio's scheduler (its
    send_all always makes one); returns the rest, for send_all.  TLS and other streams: everything is left.

    The descriptor is read at the moment of writing: a closed trio socket reports -1, so a number reused by a
    newer connection can never be written to."""
    if type(stream) is not trio.SocketStream:
        return data
    fd = stream.socket.fileno()
    if fd < 0:
        return data  # closed: send_all raises the proper error
    try:
        sent = os.write(fd, data)
    except BlockingIOError:
        return data
    return data[sent:]


def _batchable(ws: tws.WebSocketConnection) -> bool:
    """Whether this trio-websocket exposes the internals that batching uses (0.12 does; the pin is <0.13)."""
    return all(hasattr(ws, name) for name in ("_recv_channel", "_wsproto", "_stream_lock", "_stream", "_close_reason",
                                              "_abort_web_socket"))


class TrioWebsocketSocket:
    """`MessageSocket` over a trio-websocket connection.

    Batches go through the connection's internals (its message channel, wsproto and stream lock): one
    write for several messages is what makes a burst of events cheap.  Without them, message by message."""

    __slots__ = ("_batch", "_ws")

    def __init__(self, ws: tws.WebSocketConnection) -> None:
        self._ws = ws
        self._batch = _batchable(ws)

    async def get_message(self) -> str | bytes:
        try:
            return await self._ws.get_message()
        except tws.ConnectionClosed as exc:
            raise SocketClosed(exc.reason.code, exc.reason.reason) from None

    async def get_messages(self) -> list[str | bytes]:
        messages = [await self.get_message()]
        if self._batch:
            receive = self._ws._recv_channel.receive_nowait
            try:
                while True:
                    messages.append(receive())
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                pass  # the next get_message reports an end
        return messages

    async def send_message(self, message: str | bytes) -> None:
        try:
            await self._ws.send_message(message)
        except tws.ConnectionClosed as exc:
            raise SocketClosed(exc.reason.code, exc.reason.reason) from None

    async def send_texts(self, messages: Sequence[bytes]) -> None:
        ws = self._ws
        if not self._batch:
            try:
                for message in messages:
                    await ws.send_message(message.decode())
            except tws.ConnectionClosed as exc:
                raise SocketClosed(exc.reason.code, exc.reason.reason) from None
            return
        # As WebSocketConnection.send_message and _send, with one write for the lot, and no pass through the
        # scheduler when the stream lock is free and the kernel takes the whole write.
        if ws._close_reason:
            raise SocketClosed(ws._close_reason.code, ws._close_reason.reason)
        data = b"".join([ws._wsproto.send(TextMessage(data=m.decode())) for m in messages])
        lock = ws._stream_lock
        try:
            lock.acquire_nowait()
        except trio.WouldBlock:
            await lock.acquire()
        try:
            rest = write_now(ws._stream, data)
            if rest:
                await ws._stream.send_all(rest)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            await ws._abort_web_socket()
            reason = ws._close_reason
            raise SocketClosed(reason.code if reason else 1006, reason.reason if reason else "") from None
        finally:
            lock.release()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        # Close reasons are limited to 123 bytes by the WebSocket framing.
        reason = reason.encode()[:123].decode(errors="ignore")
        with trio.move_on_after(CLOSE_TIMEOUT):
            await self._ws.aclose(code, reason)


class TrioWebsocketIncoming:
    """An upgrade request the server accepts or rejects."""

    __slots__ = ("_request", "request")

    def __init__(self, request: tws.WebSocketRequest) -> None:
        self._request = request
        headers = tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers)
        self.request = HandshakeRequest(
            path=request.path, headers=headers, subprotocols=tuple(request.proposed_subprotocols)
        )

    async def accept(self, subprotocol: str | None = None) -> TrioWebsocketSocket:
        return TrioWebsocketSocket(await self._request.accept(subprotocol=subprotocol))

    async def reject(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        await self._request.reject(status, extra_headers=[(b"content-type", content_type.encode())], body=body)


async def serve(
    handler: Handler,
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve WebSocket upgrades on host:port (TLS if `ssl_context`); `task_status.started` gets the bound port."""

    async def on_request(request: tws.WebSocketRequest) -> None:
        await handler(TrioWebsocketIncoming(request))

    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            partial(
                tws.serve_websocket,
                on_request,
                host,
                port,
                ssl_context,
                message_queue_size=64,
                max_message_size=MAX_MESSAGE_SIZE,
                receive_buffer_size=RECEIVE_BUFFER_SIZE,
                connect_timeout=CONNECT_TIMEOUT,
                disconnect_timeout=CLOSE_TIMEOUT,
            )
        )
        task_status.started(server.port)


@asynccontextmanager
async def open_connection(
    url: str,
    headers: list[tuple[str, str]],
    *,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[TrioWebsocketSocket]:
    """A client WebSocket for the duration of the block; `HandshakeFailed` if it cannot open."""
    opened = False
    # trio-websocket 0.12.2 raises ConnectionTimeout but then waits forever for its reader task when a server
    # accepts TCP and never answers the upgrade; this scope cancels that wait (lifted once the socket is open).
    with trio.CancelScope(deadline=trio.current_time() + CONNECT_TIMEOUT + 1) as connecting:
        try:
            async with tws.open_websocket_url(
                url,
                ssl_context,
                extra_headers=[(k.encode(), v.encode()) for k, v in headers],
                message_queue_size=64,
                max_message_size=MAX_MESSAGE_SIZE,
                receive_buffer_size=RECEIVE_BUFFER_SIZE,
                connect_timeout=CONNECT_TIMEOUT,
                disconnect_timeout=CLOSE_TIMEOUT,
            ) as ws:
                opened = True
                connecting.deadline = math.inf
                yield TrioWebsocketSocket(ws)
        except tws.HandshakeError as exc:
            if opened:
                raise
            _handshake_failed(exc)
        except (OSError, trio.BrokenResourceError) as exc:
            if opened:
                raise
            _handshake_failed(exc)
    if connecting.cancelled_caught and not opened:
        raise HandshakeFailed(None, f"upstream unreachable: no handshake within {CONNECT_TIMEOUT:.0f} s")


def _handshake_failed(exc: Exception) -> NoReturn:
    """The HandshakeFailed for an exception from trio-websocket's open_websocket_url."""
    if isinstance(exc, tws.ConnectionRejected):
        body = (exc.body or b"").decode("utf-8", "replace")[:300]
        message = f"upstream refused the connection: HTTP {exc.status_code} {body}".strip()
        raise HandshakeFailed(exc.status_code, message) from None
    if isinstance(exc, tws.ConnectionTimeout):
        # Also what a refused TLS certificate looks like here: trio-websocket's reader swallows the ssl error.
        raise HandshakeFailed(None, f"upstream unreachable: no handshake within {CONNECT_TIMEOUT:.0f} s") from None
    if isinstance(exc, OSError):
        raise HandshakeFailed(None, f"upstream unreachable: {exc.strerror or exc}") from None
    # HandshakeError wraps the network error; a failed TLS handshake (bad certificate, wrong host name)
    # arrives as a BrokenResourceError caused by the ssl error.
    cause = exc.__cause__ or exc.__context__
    detail = f"{type(cause).__name__}: {cause}" if cause is not None else "handshake failed"
    raise HandshakeFailed(None, f"upstream unreachable: {detail}") from None


OpenConnection = Callable[..., AbstractAsyncContextManager[MessageSocket]]
Serve = Callable[..., Awaitable[None]]


@attrs.frozen
class Transport:
    """One WebSocket implementation behind the seam: its server and its client."""

    name: TransportName
    serve: Serve
    open_connection: OpenConnection


def get_transport(name: str) -> Transport:
    """The transport called `name` (one of TRANSPORT_NAMES); ValueError otherwise."""
    if name == "trio-websocket":
        return Transport("trio-websocket", serve, open_connection)
    if name == "websockets":
        # Imported on demand: relay.transport_ws builds on this module's seam types.
        from relay import transport_ws

        return Transport("websockets", transport_ws.serve, transport_ws.open_connection)
    raise ValueError(f"unknown transport {name!r}; expected one of {', '.join(TRANSPORT_NAMES)}")
