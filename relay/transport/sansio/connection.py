"""`WebsocketsSocket`: a `MessageSocket` over websockets' sans-IO `Protocol` and a trio stream.

See the package docstring for the design: parsing inline in the task that calls `get_message`, a send lock
with a backlog for what parsing produces, keepalive checks folded into the reads.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Sequence

import trio
from websockets.exceptions import ProtocolError
from websockets.frames import Frame, Opcode
from websockets.protocol import CLOSED, OPEN, SEND_EOF, SERVER
from websockets.protocol import Protocol as WsProtocol

from relay.gate import Gate
from relay.transport import (
    CLOSE_TIMEOUT,
    MAX_MESSAGE_SIZE,
    PING_INTERVAL,
    PING_TIMEOUT,
    RECEIVE_BUFFER_SIZE,
    SocketClosed,
)
from relay.transport.streams import Frames, write_now

# Opcode members exist in every websockets release we support (module aliases moved between 16 and 17).
TEXT, BINARY, CONT, CLOSE = Opcode.TEXT, Opcode.BINARY, Opcode.CONT, Opcode.CLOSE

# websockets logs every connection opened and closed at INFO; the relay logs sessions itself.
protocol_log = logging.getLogger("relay.transport.sansio.protocol")
protocol_log.setLevel(logging.WARNING)

# Errors a trio stream raises when the connection breaks or we closed it under a blocked call.
STREAM_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


def describe(exc: BaseException) -> str:
    """`Type: message`, with the underlying cause (trio wraps socket and TLS errors in BrokenResourceError)."""
    text = f"{type(exc).__name__}: {exc}"
    cause = exc.__cause__ or exc.__context__
    if cause is not None and str(cause) not in text:
        text += f" ({type(cause).__name__}: {cause})"
    return text


class WebsocketsSocket:
    """`MessageSocket` over a websockets `Protocol` and a trio stream (TCP or TLS); see the package docstring."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        protocol: WsProtocol,
        *,
        pending: Sequence[object] = (),
        framed: bool = False,
        ping_interval: float | None = PING_INTERVAL,
        ping_timeout: float = PING_TIMEOUT,
    ) -> None:
        self._stream = stream
        self._protocol = protocol
        self._messages: deque[str | bytes] = deque()
        self._fragments: list[bytes | bytearray] = []
        self._fragments_text = False
        self._send_lock = Gate()
        # Protocol output a reader took while a writer held the lock; that writer sends it before releasing.
        self._backlog: list[bytes] = []
        self._close_info: tuple[int, str] | None = None  # what SocketClosed reports, once known
        self._closing = False  # close() has started: no more reads on behalf of get_message
        self._stream_closed = False
        self._write_broken = False  # a write failed or was cancelled midway: the stream may hold half a frame
        self._reading = False  # a task is inside _read_step (trio streams allow one reader at a time)
        self._more = True  # the last read filled the buffer (the socket may hold more)
        self._reader_left: trio.Event | None = None  # set when that task leaves, for close() waiting on it
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._heard = False  # received anything since the last keepalive check
        self._awaiting_pong = False
        self._deadline = trio.current_time() + ping_interval if ping_interval else float("inf")
        # Whole messages are framed here rather than by the protocol (see _split), from the first read on, when
        # the handshake's reads held nothing past its head: the protocol holds no partial frame then.
        limit = getattr(protocol, "max_message_size", None) or MAX_MESSAGE_SIZE  # its max_size (websockets >= 14)
        self._frames = Frames(masked=protocol.side is SERVER, limit=limit) if framed else None
        # Frames that arrived in the same read as the handshake.
        self._handle(list(pending))

    @property
    def subprotocol(self) -> str | None:
        return self._protocol.subprotocol

    def _closed_exc(self) -> SocketClosed:
        code, reason = self._close_info or (1006, "connection closed")
        return SocketClosed(code, reason)

    # ------------------------------------------------------------ reading

    async def get_message(self) -> str | bytes:
        """The next message: str for text, bytes for binary; SocketClosed once the connection is over.

        A schedule point only when it has to read: messages already parsed (at most one 64 KiB read's worth)
        come back at once, which is where the speed comes from.  Always a cancellation point.  One task at a
        time may call it (as with any trio stream); close() may run concurrently."""
        if self._messages:
            await trio.lowlevel.checkpoint_if_cancelled()
            return self._messages.popleft()
        if self._reading:
            raise trio.BusyResourceError("another task is already reading this WebSocket")
        while not self._messages:
            if self._close_info is not None or self._closing:
                raise self._closed_exc()
            await self._read_step()
        return self._messages.popleft()

    async def get_messages(self) -> list[str | bytes]:
        """The next message and the rest of what the same reads parsed behind it."""
        first = await self.get_message()
        if not self._messages:
            return [first]
        messages = [first, *self._messages]
        self._messages.clear()
        return messages

    async def _read_step(self) -> None:
        self._reading = True
        try:
            await self._receive()
        finally:
            self._reading = False
            if self._reader_left is not None:
                self._reader_left.set()

    async def _receive(self) -> None:
        """One read from the stream, parsed: messages land in the deque, protocol output is sent."""
        if self._stream_closed:
            return
        if self._deadline <= trio.current_time():
            # Nobody read for a while (e.g. the reader sat on backpressure): check without a stale timeout.
            await self._keepalive(stale=True)
            if self._stream_closed:
                return
        try:
            data = await self._read()
        except STREAM_ERRORS as exc:
            await self._abort(f"connection lost: {describe(exc)}")
            return
        if data is None:
            await self._keepalive(stale=False)
            return
        self._heard = True
        protocol = self._protocol
        try:
            if data and self._frames is not None:
                self._split(data)
            elif data:
                protocol.receive_data(data)
                self._handle(protocol.events_received())
            else:
                protocol.receive_eof()
                self._handle(protocol.events_received())
        except EOFError:  # data after the end of stream: cannot happen, as reads stop at CLOSED
            await self._abort("data after end of stream")
            return
        if self._close_info is None and protocol.state is not OPEN:
            if protocol.close_rcvd is not None:
                self._close_info = (protocol.close_rcvd.code, protocol.close_rcvd.reason)
            elif protocol.close_sent is not None:  # we failed the connection: 1002, 1007, 1009
                self._close_info = (protocol.close_sent.code, protocol.close_sent.reason)
            else:
                self._close_info = (1006, "connection closed without a close frame")
        await self._flush_from_reader()
        if protocol.state is CLOSED:
            await self._close_stream()

    async def _read(self) -> bytes | None:
        """One read, at most RECEIVE_BUFFER_SIZE bytes; None if the keepalive deadline passed first.

        A plain TCP socket is read directly: after a short read it waits for readiness at once (receive_some
        would first try a read that finds nothing), and a cancel scope for the deadline is set up only when there
        is a wait.  Still a cancellation point, and a read that did not wait still lets other tasks run."""
        stream = self._stream
        if type(stream) is not trio.SocketStream:
            with trio.move_on_at(self._deadline):
                return await stream.receive_some(RECEIVE_BUFFER_SIZE)
            return None
        sock = stream.socket
        data = None
        if self._more:
            # The last read filled the buffer: more is likely there already; a short one drained the socket, so
            # that trying again would cost a read that finds nothing.
            await trio.lowlevel.checkpoint_if_cancelled()
            data = _recv(sock)
            if data is not None:
                await trio.lowlevel.cancel_shielded_checkpoint()
        if data is None:
            with trio.move_on_at(self._deadline):
                while data is None:
                    if sock.fileno() < 0:
                        raise trio.ClosedResourceError("the socket was closed")
                    await trio.lowlevel.wait_readable(sock)
                    data = _recv(sock)
            if data is None:
                return None
        self._more = len(data) == RECEIVE_BUFFER_SIZE
        return data

    def _split(self, data: bytes) -> None:
        """A read's whole messages straight into the deque, and every other frame through the protocol, in order.

        The protocol's parser (a generator per frame, reading through its own stream buffer) cost more than the
        rest of a message's way through the relay's transport; pings, pongs, closes, fragments and frames it
        fails still go through it, so its answers and close codes are its own."""
        protocol = self._protocol
        messages = self._messages
        frames = self._frames
        assert frames is not None
        if protocol.state is not OPEN:
            # Closing (our close, or the peer's): the protocol takes everything from here, as it did before.
            self._frames = None
            protocol.receive_data(frames.stop() + data)
            self._handle(protocol.events_received())
            return
        for raw, item in frames.split(data):
            if protocol.state is not OPEN:
                return  # the protocol failed the connection on the frame before: it discards what follows
            if raw:
                protocol.receive_data(item)  # type: ignore[arg-type]
                self._handle(protocol.events_received())
            else:
                messages.append(item)

    def _handle(self, events: list[object]) -> None:
        for frame in events:
            if not isinstance(frame, Frame):
                continue
            opcode = frame.opcode
            if opcode is TEXT or opcode is BINARY:
                if frame.fin:
                    if not self._deliver(opcode is TEXT, frame.data):
                        return
                else:
                    self._fragments_text = opcode is TEXT
                    self._fragments = [frame.data]
            elif opcode is CONT:
                # The protocol checks continuation order and caps the assembled size at max_size.
                self._fragments.append(frame.data)
                if frame.fin:
                    data, self._fragments = b"".join(self._fragments), []
                    if not self._deliver(self._fragments_text, data):
                        return
            elif opcode is CLOSE and self._close_info is None:
                rcvd = self._protocol.close_rcvd
                self._close_info = (rcvd.code, rcvd.reason) if rcvd is not None else (1005, "")
            # Pings are answered by the protocol itself; pongs matter only as signs of life.

    def _deliver(self, text: bool, data: bytes | bytearray) -> bool:
        if not text:
            self._messages.append(data if type(data) is bytes else bytes(data))
            return True
        try:
            self._messages.append(data.decode())
        except UnicodeDecodeError:
            # RFC 6455 8.1: invalid UTF-8 in a text message fails the connection with 1007.
            self._protocol.fail(1007, "invalid UTF-8 in a text message")
            self._close_info = (1007, "invalid UTF-8 in a text message")
            return False
        return True

    async def _keepalive(self, *, stale: bool) -> None:
        now = trio.current_time()
        assert self._ping_interval is not None  # the deadline is infinite otherwise
        if self._heard:
            self._heard = self._awaiting_pong = False
            self._deadline = now + self._ping_interval
        elif not self._awaiting_pong:
            self._awaiting_pong = True
            self._deadline = now + self._ping_timeout
            if self._protocol.state is OPEN:
                self._protocol.send_ping(os.urandom(4))
                await self._flush_from_reader()
        elif stale:
            # The pong may be sitting unread in the socket: we were not reading, so give it a fresh window.
            self._deadline = now + self._ping_timeout
        else:
            await self._abort("keepalive ping timeout")

    # ------------------------------------------------------------ writing

    async def send_message(self, message: str | bytes) -> None:
        async with self._send_lock:
            if self._closing or self._write_broken or self._protocol.state is not OPEN:
                raise self._closed_exc()
            if isinstance(message, str):
                self._protocol.send_text(message.encode())
            else:
                self._protocol.send_binary(message)
            await self._drain()

    async def send_texts(self, messages: Sequence[bytes]) -> None:
        """One write for all of `messages`: a translator step's events leave in one syscall."""
        async with self._send_lock:
            if self._closing or self._write_broken or self._protocol.state is not OPEN:
                raise self._closed_exc()
            send_text = self._protocol.send_text
            for message in messages:
                send_text(message)
            await self._drain()

    def send_now(self, messages: Sequence[bytes]) -> int:
        """See `MessageSocket.send_now`; a rest waits in the backlog, which the next holder of the lock sends first."""
        if (self._send_lock.locked() or self._backlog or self._closing or self._write_broken
                or self._protocol.state is not OPEN or type(self._stream) is not trio.SocketStream):
            return -1
        send_text = self._protocol.send_text
        for message in messages:
            send_text(message)
        payload = b"".join(self._protocol.data_to_send())
        try:
            rest = write_now(self._stream, payload)
        except OSError:
            rest = payload  # _drain meets the error again and aborts the connection as usual
        if rest:
            self._backlog.append(rest)
        return len(rest)

    async def _write(self, payload: bytes) -> None:
        # Reads still yield on every call, so skipping the scheduler here lets no task monopolise the loop.
        rest = write_now(self._stream, payload)
        if rest:
            await self._stream.send_all(rest)

    async def _flush_from_reader(self) -> None:
        data = self._protocol.data_to_send()
        if not data:
            return
        self._backlog += data
        if self._send_lock.locked():
            return  # the holder loops on _drain until nothing is left, backlog included
        async with self._send_lock:
            try:
                await self._drain()
            except SocketClosed:
                pass  # recorded in _close_info; get_message raises it after the queued messages

    async def _drain(self) -> None:
        """Send everything the protocol has produced; the send lock must be held."""
        while True:
            data = self._protocol.data_to_send()
            if self._backlog:
                data, self._backlog = self._backlog + data, []
            if not data:
                return
            if self._stream_closed or self._write_broken:
                raise self._closed_exc()
            eof = data[-1] == SEND_EOF  # the protocol asks for a half-close only as its last output
            payload = b"".join(data)
            try:
                if payload:
                    await self._write(payload)
                if eof and isinstance(self._stream, trio.abc.HalfCloseableStream):
                    await self._stream.send_eof()
                elif eof:
                    # TLS cannot half-close: close outright, or both ends would wait for the other's EOF.
                    await self._close_stream()
                    return
            except STREAM_ERRORS as exc:
                self._write_broken = True
                await self._abort(f"connection lost: {describe(exc)}")
                raise self._closed_exc() from None
            except BaseException:
                # Cancelled in the middle of send_all: the peer may have part of a frame; never write again.
                self._write_broken = True
                raise

    # ------------------------------------------------------------ closing

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """The closing handshake: send a close frame, wait for the peer's and its end of stream, close.

        Bounded by CLOSE_TIMEOUT, after which the stream is closed regardless.  Idempotent."""
        if self._stream_closed:
            return
        # Close reasons are limited to 123 bytes by the WebSocket framing.
        reason = reason.encode()[:123].decode(errors="ignore")
        try:
            with trio.move_on_after(CLOSE_TIMEOUT):
                if not self._closing:
                    self._closing = True
                    self._messages.clear()  # as trio-websocket: a local close discards what was not read
                    await self._send_close(code, reason)
                while self._protocol.state is not CLOSED and not self._stream_closed:
                    if self._reading:
                        # Another task is in get_message; it sees the peer's close.  Read ourselves once it leaves.
                        if self._reader_left is None or self._reader_left.is_set():
                            self._reader_left = trio.Event()
                        await self._reader_left.wait()
                    else:
                        await self._read_step()
        finally:
            await self._close_stream()

    async def _send_close(self, code: int, reason: str) -> None:
        async with self._send_lock:
            if self._protocol.state is not OPEN or self._write_broken:
                return
            try:
                self._protocol.send_close(code, reason)
            except ProtocolError:  # a code the protocol may not send (1005, 1006, 1015, < 1000, ...)
                self._protocol.send_close(1011, reason)
            if self._close_info is None:
                # As trio-websocket: our own side sees a local close as normal, whatever code the peer gets.
                self._close_info = (1000, "")
            try:
                await self._drain()
            except SocketClosed:
                pass

    async def _abort(self, reason: str) -> None:
        if self._close_info is None:
            self._close_info = (1006, reason)
        self._write_broken = True
        await self._close_stream()

    async def _close_stream(self) -> None:
        if self._stream_closed:
            return
        self._stream_closed = True
        if self._close_info is None:
            self._close_info = (1006, "connection closed")
        # Wakes any task blocked on the stream with ClosedResourceError; closes even if we are cancelled.
        await trio.aclose_forcefully(self._stream)


def _recv(sock: trio.socket.SocketType) -> bytes | None:
    """What the socket holds, None if nothing yet.  The descriptor is read at the moment of reading, as in
    write_now; a socket closed under us raises ClosedResourceError, as trio's own read would."""
    fd = sock.fileno()
    if fd < 0:
        raise trio.ClosedResourceError("the socket was closed")
    try:
        return os.read(fd, RECEIVE_BUFFER_SIZE)
    except BlockingIOError:
        return None


def head_only(received: bytes) -> bool:
    """Whether the handshake's reads ended with its HTTP head (a peer sends no frame before the upgrade's answer;
    one that does leaves its frames to the protocol for the whole connection)."""
    return len(received) >= 4 and received.find(b"\r\n\r\n") == len(received) - 4


async def receive_into(stream: trio.abc.Stream, protocol: WsProtocol) -> bytes:
    """One read of a handshake fed to `protocol` (end of stream included); returns what was read."""
    data = await stream.receive_some(RECEIVE_BUFFER_SIZE)
    if data:
        protocol.receive_data(data)
    else:
        protocol.receive_eof()
    return data


async def write_out(stream: trio.abc.Stream, protocol: WsProtocol) -> None:
    """Send the protocol's output outside a `WebsocketsSocket` (handshake time); half-close if it asks."""
    await send_chunks(stream, protocol.data_to_send())


async def send_chunks(stream: trio.abc.Stream, data: list[bytes]) -> None:
    if payload := b"".join(data):
        await stream.send_all(payload)
    if data and data[-1] == SEND_EOF and isinstance(stream, trio.abc.HalfCloseableStream):
        await stream.send_eof()
