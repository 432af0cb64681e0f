"""What both transports share below the WebSocket protocol: writing to a plain TCP stream without a pass through
trio's scheduler, and splitting the bytes read into whole messages without the protocol library."""

from __future__ import annotations

import os

import trio

try:
    from websockets.speedups import apply_mask
except ImportError:  # websockets built without its C extension

    def apply_mask(data: bytes, mask: bytes) -> bytes:
        n = len(data)
        key = int.from_bytes((mask * ((n >> 2) + 1))[:n], "little")
        return (int.from_bytes(data, "little") ^ key).to_bytes(n, "little")

BUFFERED = 256 * 1024  # the largest frame Frames waits for whole; a larger one goes to the library as it arrives


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


class Frames:
    """Splits what an open WebSocket's socket reads into frames, for a transport whose protocol library costs
    more per frame than the frame does: a whole text or binary message in one frame comes out as its str or
    bytes; any other frame (ping, pong, close, fragments, one over the size limit, one the library will fail)
    comes out as its raw bytes, for the library, in order.  After a close or a frame it will fail, everything
    goes to the library, so that its close codes stay its own.  The library must hold no partial frame when
    splitting starts."""

    __slots__ = ("buffer", "fragmented", "limit", "masked", "passthrough", "streaming")

    def __init__(self, masked: bool, limit: int) -> None:
        self.masked = 0x80 if masked else 0  # a server's peer masks every frame; a client's never does
        self.limit = limit
        self.buffer = b""  # the start of a frame not yet whole
        self.streaming = 0  # bytes still due of a frame handed over before it was whole
        self.fragmented = False  # the library holds the first fragments of a message
        self.passthrough = False

    def stop(self) -> bytes:
        """Hand everything to the library from here on; returns the start of a frame not yet whole, for it."""
        self.passthrough = True
        rest, self.buffer = self.buffer, b""
        return rest

    def split(self, data: bytes) -> list[tuple[bool, str | bytes]]:
        out: list[tuple[bool, str | bytes]] = []
        if self.passthrough:
            return [(True, data)]
        if self.streaming:
            if len(data) <= self.streaming:
                self.streaming -= len(data)
                return [(True, data)]
            out.append((True, data[:self.streaming]))
            data = data[self.streaming:]
            self.streaming = 0
        if self.buffer:
            data = self.buffer + data
            self.buffer = b""
        n = len(data)
        pos = 0
        while n - pos >= 2:
            b0 = data[pos]
            b1 = data[pos + 1]
            length = b1 & 0x7F
            head = pos + 2
            if length == 126:
                length = int.from_bytes(data[head:head + 2], "big")
                head += 2
            elif length == 127:
                length = int.from_bytes(data[head:head + 8], "big")
                head += 8
            masked = b1 & 0x80
            if masked:
                head += 4
            if head > n:
                break
            end = head + length
            opcode = b0 & 0x0F
            fin = b0 & 0x80
            data_frame = opcode == 1 or opcode == 2
            if (masked != self.masked or b0 & 0x70 or (data_frame and self.fragmented)
                    or (opcode == 0 and not self.fragmented) or (opcode > 8 and (not fin or length > 125))
                    or opcode in (3, 4, 5, 6, 7, 8) or opcode > 10):
                self.passthrough = True  # a close, or a frame the library fails: the rest is its
                out.append((True, data[pos:]))
                return out
            if fin and data_frame and length <= self.limit and (end <= n or length <= BUFFERED):
                if end > n:
                    break  # the rest of the frame is on its way
                payload = data[head:end]
                if masked:
                    payload = apply_mask(payload, data[head - 4:head])
                if opcode == 2:
                    out.append((False, payload))
                    pos = end
                    continue
                try:
                    out.append((False, payload.decode()))
                except UnicodeDecodeError:
                    self.passthrough = True  # the library fails it with 1007
                    out.append((True, data[pos:]))
                    return out
                pos = end
                continue
            if data_frame or opcode == 0:
                self.fragmented = not fin
            if end > n:  # the library parses a large frame as it comes (a buffer here would be copied at every read)
                self.streaming = end - n
                out.append((True, data[pos:]))
                return out
            out.append((True, data[pos:end]))
            pos = end
        if pos < n:
            self.buffer = data[pos:]
        return out
