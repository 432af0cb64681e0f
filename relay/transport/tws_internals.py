"""Every private attribute of trio-websocket that the relay uses, in one place (written against 0.12.2).

trio-websocket's public API sends one message per call, each through the connection's stream lock with a
scheduler pass even when the lock is free, and each in a write of its own; it has no public way to take the
messages already received without waiting, to send several in one write, or to run a client connection over
a stream opened by the caller (which is how a refused TLS handshake, or a peer that closes during the upgrade,
is noticed at once rather than at the connect timeout).  Its reader task, which every connection runs, makes
two scheduler passes per read and one more per message it queues.  The transport (relay.transport.tws) does
those through the internals named here and nowhere else, and runs `reader_task` in place of that reader.
`missing` lists what an upgrade moved: tests/test_tws_internals.py fails with that list, and a socket whose
connection lacks them falls back to message-by-message sends.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio
import trio_websocket as tws
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import RemoteProtocolError

from relay.gate import Gate
from relay.transport.streams import Frames, apply_mask

log = logging.getLogger("relay.transport.tws")

# trio-websocket's handler of each wsproto event, by name: looked up per event (rare past the handshake: whole
# messages are delivered by the reader itself) rather than bound into a dict per connection.
HANDLERS = {
    AcceptConnection: "_handle_accept_connection_event",
    BytesMessage: "_handle_message_event",
    CloseConnection: "_handle_close_connection_event",
    Ping: "_handle_ping_event",
    Pong: "_handle_pong_event",
    RejectConnection: "_handle_reject_connection_event",
    RejectData: "_handle_reject_data_event",
    Request: "_handle_request_event",
    TextMessage: "_handle_message_event",
}
NO_KEYS = memoryview(b"")

TEXT, BINARY = 0x81, 0x82  # FIN set, no RSV bits (trio-websocket negotiates no extension)
KEYS = 4096  # bytes of masking keys drawn from os.urandom at a time: 1,024 client frames

# What TwsInternals and the functions below read or replace on a WebSocketConnection, and on a WebSocketServer.
CONNECTION = ("_recv_channel", "_wsproto", "_stream_lock", "_stream", "_close_reason", "_abort_web_socket", "_send",
              "_open_handshake", "_close_handshake", "_reader_task", "_send_channel", "_reader_running",
              "_initial_request", "_receive_buffer_size", "_max_message_size", "_message_parts", "_close_stream",
              "_get_request", "_handle_accept_connection_event", "_handle_close_connection_event",
              "_handle_message_event", "_handle_ping_event", "_handle_pong_event", "_handle_reject_connection_event",
              "_handle_reject_data_event", "_handle_request_event")
SERVER = ("_handle_connection", "_handler", "_message_queue_size", "_max_message_size", "_receive_buffer_size",
          "_connect_timeout", "_disconnect_timeout")


def missing(obj: tws.WebSocketConnection | tws.WebSocketServer) -> list[str]:
    """The internals this module needs that `obj` lacks (empty on trio-websocket 0.12)."""
    names = SERVER if isinstance(obj, tws.WebSocketServer) else CONNECTION
    return [name for name in names if not hasattr(obj, name)]


class TwsInternals:
    """One connection's internals, looked up once: its wsproto encoder, stream, message channel and close state.

    Its stream lock is replaced by an ownerless `Gate`, so that a write started without waiting (send_now) can
    keep it held until another task sends the rest, and its own writes (pongs, pings, its close) go through
    `sender`, which the transport provides."""

    __slots__ = ("abort", "encode", "keys", "lock", "mask", "proto", "receive_nowait", "stream", "ws")

    def __init__(self, ws: tws.WebSocketConnection, sender: Callable[[Any], Awaitable[None]]) -> None:
        self.ws = ws
        self.proto = ws._wsproto
        self.encode = ws._wsproto.send  # event -> bytes on the wire
        self.mask = ws.is_client  # RFC 6455 5.3: a client masks every frame with a fresh unpredictable key
        self.keys = NO_KEYS
        self.stream: trio.abc.Stream = ws._stream
        self.receive_nowait = ws._recv_channel.receive_nowait  # messages its reader task has queued
        self.abort: Callable[[], Awaitable[None]] = ws._abort_web_socket  # after a broken write: close, set reason
        self.lock = ws._stream_lock = Gate()
        ws._send = sender

    @property
    def close_reason(self) -> tws.CloseReason | None:
        return self.ws._close_reason

    def frames(self, messages: Sequence[bytes], opcode: int = TEXT) -> bytes:
        """The wire bytes of `messages` (UTF-8 text, or binary), each a frame of its own, as wsproto's send would
        make them; framed here because wsproto's send copies each payload four times and a text message must
        first be decoded to str for it.  Outside the open state wsproto's own send raises as it would."""
        if self.proto.state is not ConnectionState.OPEN:
            kind = TextMessage if opcode == TEXT else BytesMessage
            return b"".join([self.encode(kind(data=m.decode() if opcode == TEXT else m)) for m in messages])
        parts: list[bytes] = []
        masked = 0x80 if self.mask else 0
        for message in messages:
            n = len(message)
            if n < 126:
                parts.append(bytes((opcode, n | masked)))
            elif n < 65536:
                parts.append(struct.pack("!BBH", opcode, 126 | masked, n))
            else:
                parts.append(struct.pack("!BBQ", opcode, 127 | masked, n))
            if masked:
                keys = self.keys
                if not keys:
                    keys = memoryview(os.urandom(KEYS))
                key = bytes(keys[:4])
                self.keys = keys[4:]
                parts.append(key)
                parts.append(apply_mask(message, key))
            else:
                parts.append(message)
        return b"".join(parts)


class Watch:
    """One client connection as the keepalive sweep sees it: its reader sets `heard` on every read."""

    __slots__ = ("heard", "silent", "ws")

    def __init__(self, ws: tws.WebSocketConnection | None = None) -> None:
        self.heard = True
        self.silent = 0  # sweeps in a row that found nothing heard
        self.ws = ws


UNWATCHED = Watch()  # for readers without keepalive: written to, never swept


class Keepalive:
    """Every client connection's keepalive, for a whole server, in one task (`run`).

    A deadline around each read cost a cancel scope per message on the audio path; here a read costs one
    attribute write, and a sweep every half period looks at every connection.  A peer silent for `seconds`
    (to within half of it) is pinged; one still silent as long again is dropped (1006).  Any bytes received
    count as a sign of life, so a busy peer is never pinged."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.watches: set[Watch] = set()

    def watch(self, ws: tws.WebSocketConnection) -> Watch:
        watch = Watch(ws)
        self.watches.add(watch)
        return watch

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            while True:
                await trio.sleep(self.seconds / 2)
                gone = []
                for watch in self.watches:
                    if watch.heard:
                        watch.heard, watch.silent = False, 0
                        continue
                    watch.silent += 1
                    if watch.silent == 2:
                        nursery.start_soon(self._ping, watch)
                    elif watch.silent >= 4:
                        gone.append(watch)
                for watch in gone:
                    self.watches.discard(watch)
                    log.info("a client silent for %.0f s after a ping was dropped", self.seconds)
                    nursery.start_soon(_drop, watch.ws)

    async def _ping(self, watch: Watch) -> None:
        ws = watch.ws
        assert ws is not None
        with trio.move_on_after(self.seconds) as scope:
            try:
                await ws._send(Ping(payload=os.urandom(4)))
            except tws.ConnectionClosed:
                pass
        if scope.cancelled_caught and watch in self.watches:  # not even the ping could be written
            self.watches.discard(watch)
            await _drop(ws)


async def _drop(ws: tws.WebSocketConnection | None) -> None:
    """End a dead peer's connection: closed 1006 for the handler, and the stream closed, which wakes the
    connection's reader out of its wait."""
    assert ws is not None
    await ws._abort_web_socket()
    await trio.aclose_forcefully(ws._stream)


async def reader_task(ws: tws.WebSocketConnection, watch: Watch = UNWATCHED) -> None:
    """trio-websocket's `_reader_task`, event for event, with what it costs per message taken out.

    Its reads (trio's receive_some) pass through the scheduler after every read that returns data, on top of
    the wait for data; a message goes into the channel with a send that passes through the scheduler again.
    Here a plain TCP socket is read directly once it is readable, and a whole message goes in with
    send_nowait: one wake-up per read whatever it holds.  A full channel still waits (the queue stays
    bounded).  Once the connection is open, whole unfragmented messages are framed by `Frames` (wsproto
    builds an event per frame and decodes text through an incremental decoder); every other frame, and a
    message in parts or too large, goes to wsproto and trio-websocket's own handlers.  Every read sets
    `watch.heard`, for `Keepalive`."""
    if ws._initial_request:  # clients send the upgrade request
        try:
            await ws._send(ws._initial_request)
        except tws.ConnectionClosed:
            ws._reader_running = False
    proto = ws._wsproto
    stream = ws._stream
    sock = stream.socket if type(stream) is trio.SocketStream else None
    size = ws._receive_buffer_size or 65536
    limit = ws._max_message_size
    channel = ws._send_channel
    put = channel.send_nowait
    ready = False  # the socket may hold more than the last read took
    frames: Frames | None = None
    handshake: bytes | None = b""  # what wsproto was given before it opened; None once frames is decided

    async def deliver(message: str | bytes) -> None:
        try:
            put(message)
        except trio.WouldBlock:
            await channel.send(message)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass  # aclose() closed the receiving side: as trio-websocket, the reader goes on

    async def dispatch() -> bool:
        """Handle wsproto's events; False once the connection is closed."""
        for event in proto.events():
            kind = type(event)
            try:
                if (kind is TextMessage or kind is BytesMessage) and event.message_finished \
                        and not ws._message_parts and len(event.data) <= limit:
                    await deliver(event.data if kind is TextMessage else bytes(event.data))
                elif kind in HANDLERS:
                    if kind is CloseConnection and proto.state is ConnectionState.OPEN:
                        # wsproto reports a frame it cannot parse (invalid UTF-8, a bad opcode...) as a close from
                        # the peer, and trio-websocket then ends the TCP connection without a word; RFC 6455
                        # 7.1.7 asks for a close frame with the code first, so the client learns why.
                        await ws._send(CloseConnection(code=event.code, reason=event.reason))
                    await getattr(ws, HANDLERS[kind])(event)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                pass  # from channel.send, as above
            except tws.ConnectionClosed:
                ws._reader_running = False
                return False
        return True

    async def feed(data: bytes) -> bool:
        if proto.state != ConnectionState.CLOSED:
            try:
                proto.receive_data(data)
            except RemoteProtocolError as err:
                if err.event_hint:
                    await ws._send(err.event_hint)
                await ws._close_stream()
        return await dispatch()

    async def read() -> bytes:
        nonlocal ready
        if sock is None:
            return await stream.receive_some(size)
        data = None
        if ready:
            # Data may have come while the last read was handled: read without a wait, and let other tasks run
            # first, as receive_some would, so that a peer that floods cannot hog the loop.
            await trio.lowlevel.checkpoint()
            data = _recv(sock, size)
        while data is None:
            if sock.fileno() < 0:
                raise trio.ClosedResourceError("the socket was closed")
            await trio.lowlevel.wait_readable(sock)
            data = _recv(sock, size)
        ready = len(data) == size
        return data

    async with channel:
        await dispatch()
        while ws._reader_running:
            try:
                data = await read()
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                await ws._abort_web_socket()
                break
            watch.heard = True
            if not data:
                if proto.state != ConnectionState.CLOSED:
                    await ws._abort_web_socket()
                break
            if handshake is not None and proto.state is ConnectionState.OPEN:
                # Framed here only if wsproto holds nothing beyond the upgrade's head (a peer may not send frames
                # before the upgrade's answer; one that does is left to wsproto for the whole connection).
                if len(handshake) >= 4 and handshake.find(b"\r\n\r\n") == len(handshake) - 4:
                    frames = Frames(masked=ws.is_server, limit=limit)
                handshake = None
            if frames is None:
                if handshake is not None:
                    handshake = handshake + data if len(handshake) < 65536 else None
                await feed(data)
                continue
            for raw, item in frames.split(data):
                if raw:
                    if not await feed(item):  # type: ignore[arg-type]
                        break
                elif ws._reader_running:
                    await deliver(item)


def _recv(sock: trio.socket.SocketType, size: int) -> bytes | None:
    """What the socket holds, up to `size` bytes; None if nothing yet.  The descriptor is read at the moment of
    reading, as in write_now: a socket closed under us raises ClosedResourceError, as trio's own read would."""
    fd = sock.fileno()
    if fd < 0:
        raise trio.ClosedResourceError("the socket was closed")
    try:
        return os.read(fd, size)
    except BlockingIOError:
        return None


async def run_reader(ws: tws.WebSocketConnection) -> None:
    """A client connection's reader (what open_websocket's nursery runs): it performs the upgrade."""
    await reader_task(ws)


def handshake_events(ws: tws.WebSocketConnection) -> tuple[trio.Event, trio.Event]:
    """(upgrade done, connection closed): set by the reader task."""
    return ws._open_handshake, ws._close_handshake


async def serve_stream(server: tws.WebSocketServer, stream: trio.abc.Stream,
                       keepalive: Keepalive | None = None) -> None:
    """WebSocketServer._handle_connection (what serve_websocket does with each accepted stream), with
    `reader_task` as the connection's reader."""
    try:
        await _serve_connection(server, stream, keepalive)
    finally:
        # (aclose leaves the stream open when the connection was already closing, e.g. after a 1009; closed here,
        # outside the nursery, so that the close's checkpoint cannot swallow the handler's exception)
        await trio.aclose_forcefully(stream)


async def _serve_connection(server: tws.WebSocketServer, stream: trio.abc.Stream,
                            keepalive: Keepalive | None) -> None:
    connection = tws.WebSocketConnection(
        stream, WSConnection(ConnectionType.SERVER), message_queue_size=server._message_queue_size,
        max_message_size=server._max_message_size, receive_buffer_size=server._receive_buffer_size)
    watch = keepalive.watch(connection) if keepalive is not None else UNWATCHED
    try:
        await _run_connection(server, stream, connection, watch)
    finally:
        if keepalive is not None:
            keepalive.watches.discard(watch)


async def _run_connection(server: tws.WebSocketServer, stream: trio.abc.Stream, connection: tws.WebSocketConnection,
                          watch: Watch) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader_task, connection, watch)
        with trio.move_on_after(server._connect_timeout) as connect_scope:
            request = await connection._get_request()
        if connect_scope.cancelled_caught:
            nursery.cancel_scope.cancel()
            await stream.aclose()
            return
        try:
            await server._handler(request)
        finally:
            with trio.move_on_after(server._disconnect_timeout):
                await connection.aclose()  # shuts the reader down even if cancelled
            nursery.cancel_scope.cancel()
