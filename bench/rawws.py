"""A minimal asyncio WebSocket client (RFC 6455, no extensions) for the load generators.

Why not `websockets.asyncio`: on this kind of 2-core VM its client cost about 150 µs of CPU per
audio chunk round trip (a task wake-up per message, an assembler, a timer per session), so the load
generators and the emulator saturated their shared core at 50 sessions, long before a relay core
did. This client is an `asyncio.Protocol` (on uvloop in the load generators, when installed): frames
are parsed in `data_received` and handed to a callback with no task switch, and a frame is written with
one `transport.write`. Every frame is masked, as RFC 6455 requires of clients, so the server under test
unmasks real data; each connection has one random masking key of its own, which lets a client build its
frames ahead (`Spliced`: an audio chunk differs from the previous one in 12 bytes, so only those are
masked per send). Masking uses websockets' C `apply_mask` when it is there.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import functools
import hashlib
import os
import random
import struct
import time
from collections.abc import Callable
from urllib.parse import urlsplit

try:
    from websockets.speedups import apply_mask as _c_apply_mask
except ImportError:  # pure-Python fallback: one big-int XOR, still only a few µs for a 6 KB frame
    _c_apply_mask = None

TEXT, BINARY, CLOSE, PING, PONG, CONT = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_HEADER = 64 * 1024

OnMessage = Callable[[bytes], None]
# One masking key per connection, not per frame: a key per frame cost the load generators a PRNG call and a full
# masking pass on every send, and unpredictability (against caching proxies) does not matter on loopback. The
# server still unmasks every byte.
_mask_key = functools.partial(random.Random().randbytes, 4)


def apply_mask(data: bytes, mask: bytes) -> bytes:
    if _c_apply_mask is not None:
        return _c_apply_mask(data, mask)
    n = len(data)
    key = (mask * ((n >> 2) + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


def _head(n: int, opcode: int) -> bytes:
    if n < 126:
        return struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    if n < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    return struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)


def frame(payload: bytes, opcode: int = TEXT, mask: bytes | None = None) -> bytes:
    """One final, masked client frame (with `mask`, else a fresh key)."""
    mask = mask or _mask_key()
    return _head(len(payload), opcode) + mask + apply_mask(payload, mask)


class Spliced:
    """Masked text frames of one template that differ only in `width` bytes at `offset` of the payload.

    Masking is a XOR by position, so everything but the window is masked once, here; a frame is then the
    pre-built head and masked prefix, the window XORed with its 4-byte key phase (one small int XOR), and the
    pre-built masked rest."""

    def __init__(self, template: bytes, offset: int, width: int, mask: bytes) -> None:
        if offset < 0 or width < 1 or offset + width > len(template):
            raise ValueError("the window must lie inside the template")
        masked = apply_mask(template, mask)
        self._before = _head(len(template), TEXT) + mask + masked[:offset]
        self._after = masked[offset + width :]
        key = (mask * ((offset + width) // 4 + 2))[offset : offset + width]
        self._key = int.from_bytes(key, "little")
        self._width = width

    def __call__(self, window: bytes) -> bytes:
        masked = (int.from_bytes(window, "little") ^ self._key).to_bytes(self._width, "little")
        return b"".join((self._before, masked, self._after))


class HandshakeError(Exception):
    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(message)
        self.status = status


class Closed(Exception):
    """The connection ended; `code` is the peer's close code (1006 when there was no close frame)."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"closed {code} {reason}".strip())
        self.code = code
        self.reason = reason


class Client(asyncio.Protocol):
    """One client connection. Messages go to `on_message` if set, else queue for `recv()`."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.on_message: OnMessage | None = None
        self.close_code: int | None = None
        self.close_reason = ""
        self.connected_at = 0.0
        self.mask = _mask_key()  # this connection's masking key (see _mask_key)
        self._rest = b""  # an incomplete frame (or response head) left over from the previous read
        self._handshaken = False
        self._handshake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue: collections.deque[bytes] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._fragments: list[bytes] = []
        self._accept = ""

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are no asyncio.Transport

    def data_received(self, data: bytes) -> None:
        # Frames are parsed straight out of the bytes read: most reads hold whole frames, so nothing is copied into
        # a buffer first, and only an incomplete tail is kept for the next read.
        if self._rest:
            data = self._rest + data
            self._rest = b""
        if not self._handshaken:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                if len(data) > _MAX_HEADER:
                    self._fail_handshake(HandshakeError(None, "response header too large"))
                else:
                    self._rest = data
                return
            self._on_response(data[:end].decode("latin-1"), data[end + 4 :])
            if not self._handshaken:
                return
            data = data[end + 4 :]
        self._parse(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.close_code is None:
            self.close_code = 1006
        if not self._handshake.done():
            self._handshake.set_exception(HandshakeError(None, f"connection lost during the handshake: {exc}"))
        if not self._closed.done():
            self._closed.set_result(None)
        self._wake()

    # -- handshake -----------------------------------------------------------------------------

    def _on_response(self, head: str, body: bytes) -> None:
        status_line, *lines = head.split("\r\n")
        parts = status_line.split(" ", 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if status != 101:
            text = body[:300].decode("utf-8", "replace")
            self._fail_handshake(HandshakeError(status, f"HTTP {status}: {text}".strip()))
            return
        if headers.get("sec-websocket-accept") != self._accept:
            self._fail_handshake(HandshakeError(status, "bad Sec-WebSocket-Accept"))
            return
        self._handshaken = True
        self._handshake.set_result(None)

    def _fail_handshake(self, exc: HandshakeError) -> None:
        if not self._handshake.done():
            self._handshake.set_exception(exc)
        if self.transport is not None:
            self.transport.close()

    # -- frames --------------------------------------------------------------------------------

    def _parse(self, data: bytes) -> None:
        pos, size = 0, len(data)
        while size - pos >= 2:
            b0, b1 = data[pos], data[pos + 1]
            n = b1 & 0x7F
            head = 2
            if n == 126:
                if size - pos < 4:
                    break
                n = int.from_bytes(data[pos + 2 : pos + 4], "big")
                head = 4
            elif n == 127:
                if size - pos < 10:
                    break
                n = int.from_bytes(data[pos + 2 : pos + 10], "big")
                head = 10
            end = pos + head + n
            if end > size:
                break
            payload = data[pos + head : end]  # servers never mask
            pos = end
            if b0 == 0x81 and self.on_message is not None:  # a whole text message: the hot path
                self.on_message(payload)
            else:
                self._on_frame(b0 & 0x0F, bool(b0 & 0x80), payload)
        if pos < size:
            self._rest = data[pos:]

    def _on_frame(self, opcode: int, fin: bool, payload: bytes) -> None:
        if opcode in (TEXT, BINARY, CONT):
            if not fin:
                self._fragments.append(payload)
                return
            if self._fragments:
                payload = b"".join([*self._fragments, payload])
                self._fragments.clear()
            if self.on_message is not None:
                self.on_message(payload)
            else:
                self._queue.append(payload)
                self._wake()
        elif opcode == PING:
            self._write(frame(payload, PONG, self.mask))
        elif opcode == CLOSE:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            if self.close_code is None:
                self.close_code = code
                self.close_reason = payload[2:].decode("utf-8", "replace")
                self._write(frame(payload[:2], CLOSE, self.mask))  # echo, as RFC 6455 asks
            if self.transport is not None:
                self.transport.close()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    # -- API -----------------------------------------------------------------------------------

    def send(self, payload: bytes | str) -> None:
        """Queue one text frame (asyncio writes at once if the socket takes it, else buffers)."""
        if self.close_code is not None:
            raise Closed(self.close_code, self.close_reason)
        self._write(frame(payload.encode() if isinstance(payload, str) else payload, TEXT, self.mask))

    def send_frame(self, data: bytes) -> None:
        """Write one frame built ahead with this connection's `mask` (see `Spliced`)."""
        if self.close_code is not None:
            raise Closed(self.close_code, self.close_reason)
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    async def recv(self) -> bytes:
        """The next queued message; `Closed` once the connection ended with nothing left."""
        while not self._queue:
            if self.close_code is not None:
                raise Closed(self.close_code, self.close_reason)
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        return self._queue.popleft()

    def close(self, code: int = 1000) -> None:
        """Send a close frame and end the TCP connection without waiting for the peer's answer."""
        if self.close_code is None:
            self.close_code = code
            self._write(frame(code.to_bytes(2, "big"), CLOSE, self.mask))
        if self.transport is not None:
            self.transport.close()

    async def wait_closed(self) -> None:
        await self._closed


async def connect(url: str, headers: dict[str, str] | None = None, *, timeout: float = 30.0) -> Client:
    """Open `url` (ws:// only) with `headers`; `Client.connected_at` is when the TCP connect started."""
    parts = urlsplit(url)
    if parts.scheme != "ws" or parts.hostname is None:
        raise ValueError(f"only ws:// URLs: {url}")
    port = parts.port or 80
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    key = base64.b64encode(os.urandom(16)).decode()
    client: Client | None = None

    def factory() -> Client:
        nonlocal client
        client = Client()
        client._accept = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()
        return client

    try:
        async with asyncio.timeout(timeout):
            await loop.create_connection(factory, parts.hostname, port)  # TCP_NODELAY is asyncio's default
            assert client is not None
            client.connected_at = started
            lines = [
                f"GET {target} HTTP/1.1",
                f"Host: {parts.hostname}:{port}",
                "Upgrade: websocket",
                "Connection: Upgrade",
                f"Sec-WebSocket-Key: {key}",
                "Sec-WebSocket-Version: 13",
                *(f"{name}: {value}" for name, value in (headers or {}).items()),
            ]
            client._write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            await client._handshake
    except BaseException:
        if client is not None and client.transport is not None:
            client.transport.abort()
        raise
    return client

