"""The fast transport: `MessageSocket` over websockets' sans-IO core, driven inline under trio.

trio-websocket's costs, as measured relaying audio frames: a reader task and a memory channel per
connection, 4 KiB reads and wsproto's pure-Python parsing and unmasking.  Here the task that asks for a
message parses it: `get_message` reads up to 64 KiB from the stream, feeds `protocol.receive_data` (C
speedups for unmasking) and queues the complete messages in a deque local to the socket.  The deque is
bounded because we parse only when asked: one read adds at most 64 KiB of messages, plus the one message
of at most MAX_MESSAGE_SIZE being assembled.

Writes go through a StrictFIFOLock so frames from two tasks never interleave.  What parsing produces (pongs,
close echoes, a half-close) is sent right away, or, when a writer holds the lock, by that writer's flush loop,
so a reader never waits behind a slow writer just to answer a ping.

Keepalive needs no task either: a read that hears nothing for PING_INTERVAL sends a ping, and one that then
hears nothing for PING_TIMEOUT declares the peer dead (SocketClosed 1006).  Any received byte counts as a
sign of life, so a busy connection is never pinged.  It works while some task waits in `get_message`, which
the relay always has on both of its sockets (the client reader and the upstream reader).
"""

from relay.transport import PING_INTERVAL, PING_TIMEOUT
from relay.transport.sansio.client import open_connection
from relay.transport.sansio.connection import WebsocketsSocket
from relay.transport.sansio.server import WebsocketsIncoming, serve

__all__ = ["PING_INTERVAL", "PING_TIMEOUT", "WebsocketsIncoming", "WebsocketsSocket", "open_connection", "serve"]
