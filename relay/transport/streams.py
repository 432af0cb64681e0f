"""Writing to a plain TCP stream without a pass through trio's scheduler, shared by both transports."""

from __future__ import annotations

import os

import trio


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
