"""A minimal asyncio WebSocket client (RFC 6455, no extensions) for the load generators.

Why not `websockets.asyncio`: on this kind of 2-core VM its client cost about 150 µs of CPU per
audio chunk round trip (a task wake-up per message, an assembler, a timer per session), so the load
generators and the emulator saturated their shared core at 50 sessions, long before a relay core
did. This client is an `asyncio.Protocol`: frames are parsed in `data_received` and handed to a
callback with no task switch, and a frame is written with one `transport.write`. Every frame is
masked with a fresh random key, as RFC 6455 requires of clients, so the server under test unmasks
real data; masking uses websockets' C `apply_mask` when it is there.
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
# A fresh masking key per frame from a PRNG, not os.urandom: a syscall per frame is a visible share of a load
# generator's CPU, and unpredictability (against caching proxies) does not matter on loopback.
_mask_key = functools.partial(random.Random().randbytes, 4)


def apply_mask(data: bytes, mask: bytes) -> bytes:
    if _c_apply_mask is not None:
        return _c_apply_mask(data, mask)
    n = len(data)
    key = (mask * ((n >> 2) + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


def frame(payload: bytes, opcode: int = TEXT) -> bytes:
    """One final, masked client frame."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    mask = _mask_key()
    return head + mask + apply_mask(payload, mask)


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
        self._buffer = bytearray()
        self._handshaken = False
        self._handshake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue: collections.deque[bytes] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._fragments: list[bytes] = []
        self._accept = ""

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self._buffer
        buf += data
        if not self._handshaken:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > _MAX_HEADER:
                    self._fail_handshake(HandshakeError(None, "response header too large"))
                return
            head = bytes(buf[:end]).decode("latin-1")
            del buf[: end + 4]
            self._on_response(head)
            if not self._handshaken:
                return
        self._parse()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.close_code is None:
            self.close_code = 1006
        if not self._handshake.done():
            self._handshake.set_exception(HandshakeError(None, f"connection lost during the handshake: {exc}"))
        if not self._closed.done():
            self._closed.set_result(None)
        self._wake()

    # -- handshake -----------------------------------------------------------------------------

    def _on_response(self, head: str) -> None:
        status_line, *lines = head.split("\r\n")
        parts = status_line.split(" ", 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if status != 101:
            body = bytes(self._buffer[:300]).decode("utf-8", "replace")
            self._fail_handshake(HandshakeError(status, f"HTTP {status}: {body}".strip()))
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

    def _parse(self) -> None:
        buf = self._buffer
        pos, size = 0, len(buf)
        while size - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            n = b1 & 0x7F
            head = 2
            if n == 126:
                if size - pos < 4:
                    break
                n = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                head = 4
            elif n == 127:
                if size - pos < 10:
                    break
                n = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                head = 10
            if size - pos < head + n:
                break
            payload = bytes(buf[pos + head : pos + head + n])  # servers never mask
            pos += head + n
            self._on_frame(b0 & 0x0F, bool(b0 & 0x80), payload)
        if pos:
            del buf[:pos]

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
            self._write(frame(payload, PONG))
        elif opcode == CLOSE:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            if self.close_code is None:
                self.close_code = code
                self.close_reason = payload[2:].decode("utf-8", "replace")
                self._write(frame(payload[:2], CLOSE))  # echo, as RFC 6455 asks
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
        self._write(frame(payload.encode() if isinstance(payload, str) else payload))

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
            self._write(frame(code.to_bytes(2, "big"), CLOSE))
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

