"""The trio-websocket transport (the default): the seam's `MessageSocket`, server and client over trio-websocket.

Its internals (one write for a batch of messages, taking queued messages without waiting, a client over our
own stream) are reached through relay.transport.tws_internals only.  Nothing else in the relay imports
trio_websocket.
"""

from __future__ import annotations

import ssl
import urllib.parse
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import NoReturn

import trio
import trio_websocket as tws
import wsproto.events
from wsproto import ConnectionType, WSConnection
from wsproto.events import Pong

from relay.http import HttpApp, answered_as_http
from relay.listen import open_listeners
from relay.transport import (
    CLOSE_TIMEOUT,
    CONNECT_TIMEOUT,
    MAX_MESSAGE_SIZE,
    PING_INTERVAL,
    RECEIVE_BUFFER_SIZE,
    Handler,
    HandshakeFailed,
    HandshakeRequest,
    SocketClosed,
    tls_failed,
)
from relay.transport.streams import write_now
from relay.transport.tws_internals import (
    BINARY,
    Keepalive,
    TwsInternals,
    handshake_events,
    missing,
    run_reader,
    serve_stream,
)


class TrioWebsocketSocket:
    """`MessageSocket` over a trio-websocket connection.

    Batches go through the connection's internals (its message channel, wsproto and stream lock): one
    write for several messages is what makes a burst of events cheap.  Without them, message by message."""

    __slots__ = ("_closing", "_held", "_io", "_pongs", "_ws")

    def __init__(self, ws: tws.WebSocketConnection) -> None:
        self._ws = ws
        self._closing = False  # close() was called: readers hear a normal close, whatever the peer echoes
        self._held = b""  # the part of a send_now the kernel did not take; the stream's gate stays held for it
        self._pongs: list[bytes] = []  # pongs due while a write held the stream: its writer sends them after
        self._io = None if missing(ws) else TwsInternals(ws, self._send_event)

    async def get_message(self) -> str | bytes:
        # A message already queued is taken without a pass through the scheduler (the channel's receive makes
        # one); the reader task still yields on every read, so no task can monopolise the loop through this.
        io = self._io
        if io is not None:
            await trio.lowlevel.checkpoint_if_cancelled()
            try:
                return io.receive_nowait()
            except trio.WouldBlock:
                pass
            except (trio.EndOfChannel, trio.ClosedResourceError):
                pass  # the channel's receive raises what trio-websocket maps to ConnectionClosed
        try:
            return await self._ws.get_message()
        except tws.ConnectionClosed as exc:
            if self._closing:
                raise SocketClosed(1000, "") from None
            raise SocketClosed(exc.reason.code, exc.reason.reason) from None

    async def get_messages(self) -> list[str | bytes]:
        messages = [await self.get_message()]
        if self._io is not None:
            receive = self._io.receive_nowait
            try:
                while True:
                    messages.append(receive())
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                pass  # the next get_message reports an end
        return messages

    async def send_message(self, message: str | bytes) -> None:
        io = self._io
        try:
            if io is None or io.close_reason:
                await self._ws.send_message(message)
            elif type(message) is str:
                await self._send_data(io.frames((message.encode(),)))
            elif type(message) is bytes:
                await self._send_data(io.frames((message,), BINARY))
            else:
                await self._ws.send_message(message)
        except tws.ConnectionClosed as exc:
            raise SocketClosed(exc.reason.code, exc.reason.reason) from None

    async def send_texts(self, messages: Sequence[bytes]) -> None:
        io = self._io
        if io is None:
            try:
                for message in messages:
                    await self._ws.send_message(message.decode())
            except tws.ConnectionClosed as exc:
                raise SocketClosed(exc.reason.code, exc.reason.reason) from None
            return
        # As WebSocketConnection.send_message and _send, with one write for the lot, and no pass through the
        # scheduler when the stream lock is free and the kernel takes the whole write.
        lock = io.lock
        if self._held:
            data, self._held = self._held, b""  # the gate is ours already: send_now left it held
        else:
            data = b""
            await lock.acquire()
        try:
            if io.close_reason:
                raise SocketClosed(io.close_reason.code, io.close_reason.reason)
            if messages:
                data += io.frames(messages)
            await self._write_held(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            await io.abort()
            reason = io.close_reason
            raise SocketClosed(reason.code if reason else 1006, reason.reason if reason else "") from None
        finally:
            lock.release()

    async def _send_event(self, event: wsproto.events.Event) -> None:
        """trio-websocket's own writes (pongs, pings, close), in place of its `_send`: a pong due while a write
        holds the stream is left to that write's task, because the connection's reader sends pongs, and a
        reader that waits for a client that is not reading would stop that client's input too."""
        io = self._io
        assert io is not None
        data = io.encode(event)
        if type(event) is Pong and io.lock.locked():
            self._pongs.append(data)
            return
        await self._send_data(data)

    async def _send_data(self, data: bytes) -> None:
        """Write `data` under the stream's gate, with the pongs that came due meanwhile; ConnectionClosed if the
        stream broke."""
        io = self._io
        assert io is not None
        lock = io.lock
        await lock.acquire()
        try:
            await self._write_held(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            await io.abort()
            assert io.close_reason is not None
            raise tws.ConnectionClosed(io.close_reason) from None
        finally:
            lock.release()

    async def _write_held(self, data: bytes) -> None:
        """Write `data` while holding the stream's gate, then the pongs that came due meanwhile."""
        stream = self._io.stream  # type: ignore[union-attr]
        rest = write_now(stream, data)
        if rest:
            await stream.send_all(rest)
        await self._send_pongs()

    async def _send_pongs(self) -> None:
        while self._pongs:  # the holder of the stream sends what came due while it wrote
            data = b"".join(self._pongs)
            self._pongs.clear()
            await self._io.stream.send_all(data)  # type: ignore[union-attr]

    def send_now(self, messages: Sequence[bytes]) -> int:
        io = self._io
        if io is None or io.close_reason or type(io.stream) is not trio.SocketStream:
            return -1
        lock = io.lock
        if not lock.try_acquire():
            return -1
        data = io.frames(messages)
        try:
            rest = write_now(io.stream, data)
        except OSError:
            rest = data  # send_texts meets the error again and closes the connection as usual
        if rest:
            self._held = rest
            return len(rest)
        lock.release()
        return 0

    async def close(self, code: int = 1000, reason: str = "") -> None:
        # Close reasons are limited to 123 bytes by the WebSocket framing.
        reason = reason.encode()[:123].decode(errors="ignore")
        self._closing = True
        with trio.move_on_after(CLOSE_TIMEOUT):
            await self._ws.aclose(code, reason)


class TrioWebsocketIncoming:
    """An upgrade request the server accepts or rejects."""

    __slots__ = ("_request", "request")

    def __init__(self, request: tws.WebSocketRequest) -> None:
        self._request = request
        headers = tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers)
        remote = request.remote
        self.request = HandshakeRequest(
            path=request.path, headers=headers, subprotocols=tuple(request.proposed_subprotocols),
            remote=f"{remote.address}:{remote.port}" if isinstance(remote, tws.Endpoint) else str(remote),
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
    http_app: HttpApp | None = None,
    reuse_port: bool = False,
    keepalive: float | None = PING_INTERVAL,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve WebSocket upgrades on host:port (TLS if `ssl_context`); `task_status.started` gets the bound port.
    With `http_app`, plain HTTP requests on the same port are answered by it (relay.http); with `reuse_port`,
    the port is shared with other processes (relay.listen).  `keepalive`: seconds of silence from a client before it
    is pinged, and then before it counts as gone (closed 1006); None: never."""

    async def on_request(request: tws.WebSocketRequest) -> None:
        await handler(TrioWebsocketIncoming(request))

    # The listeners are served here rather than by serve_websocket, so that every connection runs the transport's
    # reader (tws_internals.serve_stream) and, with `http_app`, plain HTTP requests are answered first.
    listeners: list[trio.SocketListener] | list[trio.SSLListener[trio.SocketStream]]
    if ssl_context is not None:
        listeners = await trio.open_ssl_over_tcp_listeners(port, ssl_context, host=host, https_compatible=True)
    elif http_app is not None:
        listeners = await open_listeners(host, port, reuse_port=reuse_port)
    else:
        listeners = await trio.open_tcp_listeners(port, host=host)
    async with trio.open_nursery() as nursery:
        server = tws.WebSocketServer(
            on_request, listeners, handler_nursery=nursery, message_queue_size=64,
            max_message_size=MAX_MESSAGE_SIZE, receive_buffer_size=RECEIVE_BUFFER_SIZE,
            connect_timeout=CONNECT_TIMEOUT, disconnect_timeout=CLOSE_TIMEOUT)

        sweep = Keepalive(keepalive) if keepalive else None
        if sweep is not None:
            nursery.start_soon(sweep.run)

        async def on_stream(stream: trio.abc.Stream) -> None:
            if http_app is not None and ssl_context is None and await answered_as_http(stream, http_app):
                return
            await serve_stream(server, stream, sweep)

        await nursery.start(partial(trio.serve_listeners, on_stream, listeners, handler_nursery=nursery))
        endpoint = server.listeners[0]
        assert isinstance(endpoint, tws.Endpoint)
        task_status.started(endpoint.port)


@asynccontextmanager
async def open_connection(
    url: str,
    headers: list[tuple[str, str]],
    *,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[TrioWebsocketSocket]:
    """A client WebSocket for the duration of the block; `HandshakeFailed` if it cannot open.

    TCP, TLS (for wss://) and the HTTP upgrade together get CONNECT_TIMEOUT.  The stream is opened here rather
    than by trio-websocket's connect_websocket, which waits for the upgrade alone: a peer that closes during it,
    or a refused TLS handshake (its reader task swallows the ssl error), was only noticed at the timeout.
    Exceptions from the block come out as raised, never in an exception group.  Leaving the block closes the
    socket (1000), giving up after CLOSE_TIMEOUT."""
    host, port, resource, context = _parse_url(url, ssl_context)
    deadline = trio.current_time() + CONNECT_TIMEOUT
    stream = await _open_stream(host, port, context, deadline)
    ws = tws.WebSocketConnection(
        stream,
        WSConnection(ConnectionType.CLIENT),
        host=host if port in (80, 443) else f"{host}:{port}",
        path=resource,
        client_extra_headers=[(k.encode(), v.encode()) for k, v in headers],
        message_queue_size=64,
        max_message_size=MAX_MESSAGE_SIZE,
        receive_buffer_size=RECEIVE_BUFFER_SIZE,
    )
    opened = False
    failure: HandshakeFailed | None = None
    user_error: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            reader_done = trio.Event()
            nursery.start_soon(_run_reader, ws, reader_done)
            opened_event, closed_event = handshake_events(ws)
            with trio.move_on_at(deadline):
                await _first_of(opened_event, closed_event, reader_done)
            if opened_event.is_set():
                opened = True
                try:
                    yield TrioWebsocketSocket(ws)
                except BaseException as exc:
                    user_error = exc
                    raise
                finally:
                    with trio.move_on_after(CLOSE_TIMEOUT):
                        await ws.aclose()
                    nursery.cancel_scope.cancel()
            else:
                if closed_event.is_set():
                    # The reader saw the stream end (EOF or a reset) before the upgrade's answer.
                    failure = HandshakeFailed(None, "upstream unreachable: the connection was closed during the "
                                                    "handshake")
                elif reader_done.is_set():
                    failure = HandshakeFailed(None, "upstream handshake failed: invalid HTTP response")
                else:
                    failure = HandshakeFailed(
                        None, f"upstream unreachable: no handshake within {CONNECT_TIMEOUT:.0f} s")
                nursery.cancel_scope.cancel()
                await trio.aclose_forcefully(stream)
    except BaseExceptionGroup as group:
        _reraise(group, user_error, opened)
    finally:
        # aclose() returns at once, leaving the stream open, when the connection was already closing (a 1009 for a
        # frame over the size limit): the TCP connection would outlive the session.  Closed outside the nursery:
        # inside its cancelled scope the close's checkpoint would turn the exception on its way out into Cancelled.
        await trio.aclose_forcefully(stream)
    if failure is not None:
        raise failure


def _parse_url(url: str, ssl_context: ssl.SSLContext | None) -> tuple[str, int, str, ssl.SSLContext | None]:
    """(host, port, resource, TLS context or None for ws://), as trio-websocket's open_websocket_url reads a URL;
    ValueError for one it cannot use."""
    parts = urllib.parse.urlsplit(str(url))
    if parts.scheme not in ("ws", "wss"):
        raise ValueError('WebSocket URL scheme must be "ws:" or "wss:"')
    if parts.scheme == "ws" and ssl_context is not None:
        raise ValueError("SSL context must be None for ws: URL scheme")
    if parts.hostname is None:
        raise ValueError("URL host must not be None")
    secure = parts.scheme == "wss"
    context = (ssl_context if ssl_context is not None else ssl.create_default_context()) if secure else None
    port = parts.port if parts.port is not None else (443 if secure else 80)
    resource = parts.path or "/"
    if "?" in url:
        resource += "?" + parts.query
    return parts.hostname, port, resource, context


async def _open_stream(
    host: str, port: int, context: ssl.SSLContext | None, deadline: float
) -> trio.SocketStream | trio.SSLStream[trio.SocketStream]:
    """The TCP stream to host:port, with its TLS handshake done if `context`; HandshakeFailed otherwise."""
    stream: trio.SocketStream | trio.SSLStream[trio.SocketStream] | None = None
    try:
        with trio.fail_at(deadline):
            stream = await trio.open_tcp_stream(host, port)
            if context is not None:
                # https_compatible: Google's front ends, like most HTTPS servers, may skip close_notify.
                stream = trio.SSLStream(stream, context, server_hostname=host, https_compatible=True)
                await stream.do_handshake()
            return stream
    except trio.TooSlowError:
        await _discard(stream)
        raise HandshakeFailed(None, f"upstream unreachable: no handshake within {CONNECT_TIMEOUT:.0f} s") from None
    except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        await _discard(stream)
        raise HandshakeFailed(None, f"upstream unreachable: {_describe(exc)}", final=tls_failed(exc)) from None
    except BaseException:
        await _discard(stream)
        raise


async def _discard(stream: trio.abc.Stream | None) -> None:
    if stream is not None:
        await trio.aclose_forcefully(stream)


def _describe(exc: BaseException) -> str:
    """`Type: message`, with the underlying cause: trio wraps TLS errors (a refused certificate, a peer that does
    not speak TLS) in BrokenResourceError."""
    if isinstance(exc, OSError) and not isinstance(exc, ssl.SSLError):
        return exc.strerror or str(exc) or type(exc).__name__
    cause = exc.__cause__ or exc.__context__
    if not str(exc) and cause is not None:
        exc, cause = cause, None  # e.g. SSLCertVerificationError: [SSL: CERTIFICATE_VERIFY_FAILED] ...
    text = f"{type(exc).__name__}: {exc}"
    if cause is not None and str(cause) not in text:
        text += f" ({type(cause).__name__}: {cause})"
    return text


async def _run_reader(ws: tws.WebSocketConnection, done: trio.Event) -> None:
    try:
        await run_reader(ws)
    finally:
        done.set()


async def _first_of(*events: trio.Event) -> None:
    """Return once any of `events` is set."""
    async with trio.open_nursery() as nursery:
        for event in events:
            nursery.start_soon(_wait_then_cancel, event, nursery.cancel_scope)


async def _wait_then_cancel(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:
    leaves: list[BaseException] = []
    for exc in group.exceptions:
        leaves.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return leaves


def _reraise(group: BaseExceptionGroup, user_error: BaseException | None, opened: bool) -> NoReturn:
    """Raise what the connection's nursery raised, unwrapped: the caller's own exception as it was raised (its
    cause and context kept); before the socket opened, the reader's error as HandshakeFailed."""
    leaves = _leaves(group)
    internal = [exc for exc in leaves if exc is not user_error and not isinstance(exc, trio.Cancelled)]
    if user_error is not None and (user_error in leaves or not internal):
        _raise_unchanged(user_error)
    if not opened:
        for exc in internal:
            if isinstance(exc, (tws.HandshakeError, OSError, trio.BrokenResourceError)):
                _handshake_failed(exc)
    if len(internal) == 1:
        _raise_unchanged(internal[0])
    if not internal:
        _raise_unchanged(leaves[0])  # only Cancelled
    raise group


def _raise_unchanged(exc: BaseException) -> NoReturn:
    """Raise `exc` without the exception group being handled becoming its __context__."""
    context, suppress = exc.__context__, exc.__suppress_context__
    try:
        raise exc
    finally:
        exc.__context__, exc.__suppress_context__ = context, suppress
        del exc, context


def _handshake_failed(exc: Exception) -> NoReturn:
    """The HandshakeFailed for an exception from trio-websocket's reader before the upgrade completed."""
    if isinstance(exc, tws.ConnectionRejected):
        body = (exc.body or b"").decode("utf-8", "replace")[:300]
        message = f"upstream refused the connection: HTTP {exc.status_code} {body}".strip()
        raise HandshakeFailed(exc.status_code, message) from None
    raise HandshakeFailed(None, f"upstream unreachable: {_describe(exc)}") from None


