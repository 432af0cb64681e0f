"""Every private attribute of trio-websocket that the relay uses, in one place (written against 0.12.2).

trio-websocket's public API sends one message per call, each through the connection's stream lock with a
scheduler pass even when the lock is free, and each in a write of its own; it has no public way to take the
messages already received without waiting, to send several in one write, or to run a client connection over
a stream opened by the caller (which is how a refused TLS handshake, or a peer that closes during the upgrade,
is noticed at once rather than at the connect timeout).  The transport (relay.transport.tws) does those
through the internals named here and nowhere else.  `missing` lists what an upgrade moved:
tests/test_tws_internals.py fails with that list, and a socket whose connection lacks them falls back to
message-by-message sends.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio
import trio_websocket as tws

from relay.gate import Gate

# What TwsInternals and the functions below read or replace on a WebSocketConnection, and on a WebSocketServer.
CONNECTION = ("_recv_channel", "_wsproto", "_stream_lock", "_stream", "_close_reason", "_abort_web_socket", "_send",
              "_open_handshake", "_close_handshake", "_reader_task")
SERVER = ("_handle_connection",)


def missing(obj: tws.WebSocketConnection | tws.WebSocketServer) -> list[str]:
    """The internals this module needs that `obj` lacks (empty on trio-websocket 0.12)."""
    names = SERVER if isinstance(obj, tws.WebSocketServer) else CONNECTION
    return [name for name in names if not hasattr(obj, name)]


class TwsInternals:
    """One connection's internals, looked up once: its wsproto encoder, stream, message channel and close state.

    Its stream lock is replaced by an ownerless `Gate`, so that a write started without waiting (send_now) can
    keep it held until another task sends the rest, and its own writes (pongs, pings, its close) go through
    `sender`, which the transport provides."""

    __slots__ = ("abort", "encode", "lock", "receive_nowait", "stream", "ws")

    def __init__(self, ws: tws.WebSocketConnection, sender: Callable[[Any], Awaitable[None]]) -> None:
        self.ws = ws
        self.encode = ws._wsproto.send  # event -> bytes on the wire
        self.stream: trio.abc.Stream = ws._stream
        self.receive_nowait = ws._recv_channel.receive_nowait  # messages its reader task has queued
        self.abort: Callable[[], Awaitable[None]] = ws._abort_web_socket  # after a broken write: close, set reason
        self.lock = ws._stream_lock = Gate()
        ws._send = sender

    @property
    def close_reason(self) -> tws.CloseReason | None:
        return self.ws._close_reason


async def run_reader(ws: tws.WebSocketConnection) -> None:
    """A client connection's reader task (what open_websocket's nursery runs): it performs the upgrade."""
    await ws._reader_task()


def handshake_events(ws: tws.WebSocketConnection) -> tuple[trio.Event, trio.Event]:
    """(upgrade done, connection closed): set by the reader task."""
    return ws._open_handshake, ws._close_handshake


async def serve_stream(server: tws.WebSocketServer, stream: trio.SocketStream) -> None:
    """What serve_websocket does with each accepted stream, for one whose head the relay looked at first."""
    await server._handle_connection(stream)
