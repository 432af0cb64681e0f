"""The server side: websockets' request parser and handshake over `trio.serve_tcp` connections."""

from __future__ import annotations

import email.utils
import http
import logging
import ssl

import trio
from websockets.datastructures import Headers
from websockets.headers import parse_subprotocol
from websockets.http11 import Request, Response
from websockets.protocol import SEND_EOF
from websockets.server import ServerProtocol

from relay.http import HttpApp, answered_as_http
from relay.listen import open_listeners
from relay.transport import (
    CLOSE_TIMEOUT,
    CONNECT_TIMEOUT,
    MAX_MESSAGE_SIZE,
    PING_INTERVAL,
    PING_TIMEOUT,
    RECEIVE_BUFFER_SIZE,
    Handler,
    HandshakeRequest,
    SocketClosed,
)
from relay.transport.sansio.connection import (
    STREAM_ERRORS,
    WebsocketsSocket,
    describe,
    head_only,
    protocol_log,
    receive_into,
    send_chunks,
    write_out,
)

log = logging.getLogger("relay.transport.sansio")


class WebsocketsIncoming:
    """An upgrade request, already validated as a WebSocket handshake, that the handler accepts or rejects."""

    def __init__(
        self, stream: trio.abc.Stream, protocol: ServerProtocol, request: Request, pending: list[object], framed: bool,
        keepalive: float | None = PING_INTERVAL,
    ) -> None:
        self._stream = stream
        self._keepalive = keepalive
        self._protocol = protocol
        self._request = request
        self._pending = pending
        self._framed = framed
        self.socket: WebsocketsSocket | None = None
        self.responded = False
        offered = [p for value in request.headers.get_all("Sec-WebSocket-Protocol") for p in parse_subprotocol(value)]
        self.request = HandshakeRequest(
            path=request.path, headers=tuple(request.headers.raw_items()), subprotocols=tuple(offered),
            remote=_peer(stream),
        )

    async def accept(self, subprotocol: str | None = None) -> WebsocketsSocket:
        if self.responded:
            raise RuntimeError("the handshake was already answered")
        # accept() answers with the server's first supported subprotocol that the client offered.
        self._protocol.available_subprotocols = [subprotocol] if subprotocol else None
        response = self._protocol.accept(self._request)
        await self._respond(response)
        if response.status_code != 101:
            raise SocketClosed(1006, f"handshake refused: HTTP {response.status_code}")
        keepalive = self._keepalive
        self.socket = WebsocketsSocket(self._stream, self._protocol, pending=self._pending, framed=self._framed,
                                       ping_interval=keepalive, ping_timeout=keepalive or PING_TIMEOUT)
        return self.socket

    async def reject(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        if self.responded:
            raise RuntimeError("the handshake was already answered")
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:  # a status the standard library does not name
            phrase = "Error"
        headers = Headers(
            [
                ("Date", email.utils.formatdate(usegmt=True)),
                ("Connection", "close"),
                ("Content-Type", content_type),
                ("Content-Length", str(len(body))),
            ]
        )
        await self._respond(Response(status, phrase, headers, body))

    async def _respond(self, response: Response) -> None:
        self.responded = True
        self._protocol.send_response(response)
        try:
            await write_out(self._stream, self._protocol)
        except STREAM_ERRORS as exc:
            raise SocketClosed(1006, f"connection lost: {describe(exc)}") from None


def _peer(stream: trio.abc.Stream) -> str:
    tcp = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
    try:
        host, port = tcp.socket.getpeername()[:2]  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return ""
    return f"{host}:{port}"


async def _linger(stream: trio.abc.Stream) -> None:
    """After an HTTP error response, wait (bounded) for the client to close: closing first with unread
    input would reset the connection and could destroy the response before the client reads it."""
    with trio.move_on_after(CLOSE_TIMEOUT):
        try:
            while await stream.receive_some(RECEIVE_BUFFER_SIZE):
                pass
        except STREAM_ERRORS:
            pass


async def _read_request(stream: trio.abc.Stream, keepalive: float | None) -> WebsocketsIncoming | None:
    """Parse the upgrade request with websockets' own parser; None if the connection ends here.

    Malformed requests get websockets' 4xx/5xx answer (400 when the request is not HTTP at all)."""
    # No extensions: permessage-deflate is never accepted (costly for base64 audio, see transport.md).
    protocol = ServerProtocol(max_size=MAX_MESSAGE_SIZE, logger=protocol_log)
    received = b""
    with trio.move_on_after(CONNECT_TIMEOUT):
        while True:
            data = await receive_into(stream, protocol)
            received += data
            events = protocol.events_received()
            if events and isinstance(events[0], Request):
                request = events[0]
                # Validate the upgrade now (accept() builds but does not send), so the handler only ever sees
                # real WebSocket handshakes; it is rebuilt with the chosen subprotocol on accept.
                check = protocol.accept(request)
                if check.status_code == 101:
                    return WebsocketsIncoming(stream, protocol, request, events[1:], head_only(received), keepalive)
                protocol.send_response(check)
                await write_out(stream, protocol)
                await _linger(stream)
                return None
            if not data:
                return None  # the client left before completing its request
            if protocol.handshake_exc is not None:
                output = protocol.data_to_send()
                if not any(output):
                    # websockets closes silently on a request it cannot parse; answer it properly.
                    output = [protocol.reject(400, "Bad Request: not a WebSocket handshake\n").serialize(), SEND_EOF]
                await send_chunks(stream, output)
                await _linger(stream)
                return None
    log.debug("no complete upgrade request within %.0f s", CONNECT_TIMEOUT)
    return None


async def serve(
    handler: Handler,
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    http_app: HttpApp | None = None,
    reuse_port: bool = False,
    keepalive: float | None = PING_INTERVAL,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve WebSocket upgrades on host:port (TLS if `ssl_context`); `task_status.started` gets the bound port.
    With `http_app`, plain HTTP requests on the same port are answered by it (relay.http); with `reuse_port`,
    the port is shared with other processes (relay.listen).  `keepalive`: seconds of silence from a client before it
    is pinged, and then before it counts as gone (closed 1006); None: never.

    One task per connection (trio.serve_tcp's handler nursery).  When the handler returns, an accepted socket
    is closed with 1000; an unanswered request gets a 500.  A failing handler is logged, never fatal to the server.
    """

    async def on_stream(tcp: trio.SocketStream) -> None:
        if http_app is not None and ssl_context is None and await answered_as_http(tcp, http_app):
            return
        stream: trio.abc.Stream = tcp
        if ssl_context is not None:
            # The TLS handshake runs on the first read, inside _read_request's CONNECT_TIMEOUT.
            stream = trio.SSLStream(tcp, ssl_context, server_side=True, https_compatible=True)
        incoming: WebsocketsIncoming | None = None
        try:
            incoming = await _read_request(stream, keepalive)
            if incoming is not None:
                await handler(incoming)
        except (SocketClosed, *STREAM_ERRORS) as exc:
            log.debug("connection ended during the handshake or session: %s", exc)
        except Exception:
            log.exception("WebSocket connection handler failed")
        finally:
            # Not shielded: on server shutdown the close handshake is skipped and the stream just closed.
            await _finish(stream, incoming)

    async with trio.open_nursery() as nursery:
        listeners = await open_listeners(host, port, reuse_port=reuse_port)
        await nursery.start(trio.serve_listeners, on_stream, listeners)
        task_status.started(listeners[0].socket.getsockname()[1])


async def _finish(stream: trio.abc.Stream, incoming: WebsocketsIncoming | None) -> None:
    try:
        if incoming is not None and incoming.socket is not None:
            await incoming.socket.close(1000, "")
        elif incoming is not None:
            if not incoming.responded:
                await incoming.reject(500, b"internal error\n", "text/plain; charset=utf-8")
            await _linger(stream)
    except (SocketClosed, *STREAM_ERRORS):
        pass
    finally:
        await trio.aclose_forcefully(stream)
