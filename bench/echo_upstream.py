"""A Gemini Live echo for the audio and connect scenarios: `python -m bench.echo_upstream --port P [--host H]`.

The full emulator (`python -m relay.emulator --echo-audio`) parses every message into dicts, validates it and
re-encodes its answer, over a general WebSocket library: on the shared load CPU it cost about as much per
audio chunk as the server under test, so the load side, not the server, set the audio scenario's ceiling.
This upstream speaks just enough Gemini Live for an audio session and does it over its own few lines of
RFC 6455 on asyncio (uvloop when installed):

* the first message (`{"setup": ...}`) is answered `{"setupComplete": {}}`; a first message that is not a
  setup is closed 1007, as Gemini does;
* each `{"realtimeInput": {"audio": {"mimeType": M, "data": D}}}` goes back as
  `{"serverContent": {"modelTurn": {"parts": [{"inlineData": {"mimeType": "audio/pcm;rate=24000",
  "data": D}}]}}}` with D the very same base64 string (the benchmark client matches an echo by the id in
  its first bytes and checks the rest), spliced from the bytes without a JSON parse; `mediaChunks` and
  anything the splice does not recognise take a full parse;
* everything else (activityStart/End, clientContent, toolResponse) is read and ignored: echo mode
  never answers audio with a turn, like the emulator's;
* pings are answered with pongs, a close frame with a close frame and the end of the TCP connection.

No permessage-deflate is offered (the emulator has none either), so frames are never compressed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import signal
from typing import Any

import orjson

from bench import loops

TEXT, BINARY, CLOSE, PING, PONG, CONT = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_HEAD = 64 * 1024
READY = "echo upstream listening on ws://{host}:{port} ({loop})"  # bench.servers waits for this line

_AUDIO_START = b'{"realtimeInput":{"audio":{'
_DATA_KEY = b'"data":"'
_ECHO_HEAD = b'{"serverContent":{"modelTurn":{"parts":[{"inlineData":{"mimeType":"audio/pcm;rate=24000","data":"'
_ECHO_TAIL = b'"}}]}}}'
_ECHO_FIXED = len(_ECHO_HEAD) + len(_ECHO_TAIL)


def header(n: int, opcode: int = TEXT) -> bytes:
    """The header of one final, unmasked server frame of `n` payload bytes."""
    first = bytes([0x80 | opcode])
    if n < 126:
        return first + bytes([n])
    if n < 65536:
        return first + b"\x7e" + n.to_bytes(2, "big")
    return first + b"\x7f" + n.to_bytes(8, "big")


# Echo headers by echo length: a benchmark's chunks have one or two sizes, so this stays tiny.
_ECHO_HEADERS: dict[int, bytes] = {}


def unmask(payload: bytes, mask: bytes) -> bytes:
    """XOR with the 4-byte key as one big integer: a few µs for a 1.4 KB chunk, no C extension needed."""
    n = len(payload)
    key = (mask * ((n >> 2) + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


def audio_data(message: bytes) -> bytes | None:
    """The base64 of a `{"realtimeInput":{"audio":{...,"data":"..."}}}` message as its bytes, None if the message
    is anything else or not in the compact form the splice expects (a full parse decides then)."""
    if not message.startswith(_AUDIO_START) or not message.endswith(b"}}}"):
        return None
    at = message.find(_DATA_KEY, len(_AUDIO_START))
    if at < 0:
        return None
    start = at + len(_DATA_KEY)
    end = message.find(b'"', start)
    if end < 0 or b"\\" in message[start:end]:  # an escaped '/' would not be the string's own bytes
        return None
    return message[start:end]


def parsed_audio(message: bytes) -> list[str] | None:
    """Base64 strings of a realtimeInput message's audio (`audio` or legacy `mediaChunks`), by a full parse; None
    if the message is not JSON at all."""
    try:
        event = orjson.loads(message)
    except orjson.JSONDecodeError:
        return None
    body = event.get("realtimeInput", event.get("realtime_input")) if isinstance(event, dict) else None
    if not isinstance(body, dict):
        return []
    blobs: list[Any] = [body.get("audio"), *(body.get("mediaChunks") or body.get("media_chunks") or ())]
    return [b["data"] for b in blobs if isinstance(b, dict) and isinstance(b.get("data"), str)]


def echo_frame(data: bytes) -> bytes:
    n = len(data) + _ECHO_FIXED
    head = _ECHO_HEADERS.get(n)
    if head is None:
        head = _ECHO_HEADERS[n] = header(n)
    return b"".join((head, _ECHO_HEAD, data, _ECHO_TAIL))


_SETUP_COMPLETE = header(20) + b'{"setupComplete":{}}'


class EchoConnection(asyncio.Protocol):
    """One client connection: the upgrade, then frames parsed in `data_received`, answers written once per read."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._rest = b""  # an incomplete frame (or request head) left over from the previous read
        self._upgraded = False
        self._setup = False
        self._closing = False
        self._fragments: list[bytes] = []
        self._fragment_opcode = TEXT

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are no asyncio.Transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        if self._rest:
            data = self._rest + data
            self._rest = b""
        if not self._upgraded:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                if len(data) > _MAX_HEAD:
                    self._refuse(b"431 Request Header Fields Too Large")
                else:
                    self._rest = data
                return
            if not self._upgrade(data[:end].decode("latin-1")):
                return
            data = data[end + 4 :]
        out: list[bytes] = []
        pos, size = 0, len(data)
        while size - pos >= 2 and not self._closing:
            b0, b1 = data[pos], data[pos + 1]
            n = b1 & 0x7F
            at = pos + 2
            if n == 126:
                if size - at < 2:
                    break
                n = int.from_bytes(data[at : at + 2], "big")
                at += 2
            elif n == 127:
                if size - at < 8:
                    break
                n = int.from_bytes(data[at : at + 8], "big")
                at += 8
            if not b1 & 0x80:  # clients must mask (RFC 6455 5.1)
                self._close(out, 1002, b"unmasked client frame")
                break
            if size - at < 4 + n:
                break
            payload = unmask(data[at + 4 : at + 4 + n], data[at : at + 4]) if n else b""
            pos = at + 4 + n
            self._on_frame(b0 & 0x0F, bool(b0 & 0x80), payload, out)
        if pos < size and not self._closing:
            self._rest = data[pos:]
        if out and self.transport is not None:
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))
        if self._closing and self.transport is not None:
            self.transport.close()  # the server ends the TCP connection after the close handshake (RFC 6455 7.1.1)

    # -- the upgrade ---------------------------------------------------------------------------

    def _upgrade(self, head: str) -> bool:
        request, *lines = head.split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        key = headers.get("sec-websocket-key")
        if not request.startswith("GET ") or headers.get("upgrade", "").lower() != "websocket" or not key:
            self._refuse(b"400 Bad Request")
            return False
        if headers.get("sec-websocket-version") != "13":
            self._refuse(b"426 Upgrade Required", b"Sec-WebSocket-Version: 13\r\n")
            return False
        accept = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest())
        assert self.transport is not None
        self.transport.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                             b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        self._upgraded = True
        return True

    def _refuse(self, status: bytes, extra: bytes = b"") -> None:
        if self.transport is not None:
            self.transport.write(b"HTTP/1.1 %s\r\n%sContent-Length: 0\r\nConnection: close\r\n\r\n" % (status, extra))
            self.transport.close()

    # -- frames and messages -------------------------------------------------------------------

    def _on_frame(self, opcode: int, fin: bool, payload: bytes, out: list[bytes]) -> None:
        if opcode == TEXT or opcode == BINARY:
            if fin:
                self._on_message(payload, out)
            else:
                self._fragment_opcode = opcode
                self._fragments = [payload]
        elif opcode == CONT:
            self._fragments.append(payload)
            if fin:
                message = b"".join(self._fragments)
                self._fragments = []
                self._on_message(message, out)
        elif opcode == PING:
            out.append(header(len(payload), PONG) + payload)
        elif opcode == CLOSE:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1000
            self._close(out, code if len(payload) >= 2 else None, b"")
        elif opcode != PONG:
            self._close(out, 1002, b"unknown opcode")

    def _on_message(self, message: bytes, out: list[bytes]) -> None:
        if not self._setup:
            # Gemini answers the setup and refuses anything else first.
            if b'"setup"' in message[:64]:
                self._setup = True
                out.append(_SETUP_COMPLETE)
            else:
                self._close(out, 1007, b"Invalid JSON payload received. The first message must be setup.")
            return
        data = audio_data(message)
        if data is not None:
            out.append(echo_frame(data))
            return
        if b'"realtimeInput"' not in message and b'"realtime_input"' not in message:
            return  # clientContent, toolResponse...: accepted, not answered
        chunks = parsed_audio(message)
        if chunks is None:
            self._close(out, 1007, b"Invalid JSON payload received.")
            return
        out.extend(echo_frame(c.encode()) for c in chunks)

    def _close(self, out: list[bytes], code: int | None, reason: bytes) -> None:
        """Send a close frame (echoing the peer's code, or ours), then end the connection after this read."""
        payload = b"" if code is None else code.to_bytes(2, "big") + reason[:123]
        out.append(header(len(payload), CLOSE) + payload)
        self._closing = True


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(EchoConnection, host, port, backlog=4096, reuse_address=True)
    bound = server.sockets[0].getsockname()[1]
    print(READY.format(host=host, port=bound, loop=loops.name()), flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.echo_upstream", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    with asyncio.Runner(loop_factory=loops.factory()) as runner:
        runner.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
