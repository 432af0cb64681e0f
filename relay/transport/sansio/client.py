"""The client side: TCP (and TLS for wss://), the HTTP upgrade, then a `WebsocketsSocket`."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
from websockets.client import ClientProtocol
from websockets.exceptions import InvalidHeaderValue, InvalidStatus, InvalidURI
from websockets.uri import parse_uri

from relay.transport import CONNECT_TIMEOUT, MAX_MESSAGE_SIZE, HandshakeFailed, tls_failed
from relay.transport.sansio.connection import (
    PING_INTERVAL,
    PING_TIMEOUT,
    STREAM_ERRORS,
    WebsocketsSocket,
    describe,
    head_only,
    protocol_log,
    receive_into,
    write_out,
)


async def _connect(
    url: str,
    headers: list[tuple[str, str]],
    ssl_context: ssl.SSLContext | None,
    ping_interval: float | None,
    ping_timeout: float,
) -> WebsocketsSocket:
    try:
        uri = parse_uri(url)
    except InvalidURI as exc:
        raise HandshakeFailed(None, f"invalid upstream URL: {exc}", final=True) from None
    stream: trio.abc.Stream | None = None
    # No extensions offered: the upstream never compresses (permessage-deflate off).
    protocol = ClientProtocol(uri, max_size=MAX_MESSAGE_SIZE, logger=protocol_log)
    request = protocol.connect()
    for name, value in headers:
        try:
            request.headers[name] = value
        except InvalidHeaderValue:
            # Name the header only: its value is likely a credential.
            raise HandshakeFailed(None, f"invalid upstream request header {name!r}", final=True) from None
    try:
        with trio.fail_after(CONNECT_TIMEOUT):  # TCP, TLS and the HTTP upgrade together
            stream = await trio.open_tcp_stream(uri.host, uri.port)
            if uri.secure:
                context = ssl_context if ssl_context is not None else ssl.create_default_context()
                # https_compatible: Google's front ends, like most HTTPS servers, may skip close_notify.
                stream = trio.SSLStream(stream, context, server_hostname=uri.host, https_compatible=True)
                await stream.do_handshake()
            protocol.send_request(request)
            await write_out(stream, protocol)
            events: list[object] = []
            received = b""
            while not events and protocol.handshake_exc is None:
                received += await receive_into(stream, protocol)
                events = protocol.events_received()
    except trio.TooSlowError:
        await _discard(stream)
        raise HandshakeFailed(None, f"upstream unreachable: no handshake within {CONNECT_TIMEOUT:.0f} s") from None
    except STREAM_ERRORS as exc:
        await _discard(stream)
        raise HandshakeFailed(None, f"upstream unreachable: {describe(exc)}", final=tls_failed(exc)) from None
    except BaseException:
        await _discard(stream)
        raise
    assert stream is not None
    exc = protocol.handshake_exc
    if exc is not None:
        await _discard(stream)
        if isinstance(exc, InvalidStatus):
            status = exc.response.status_code
            body = bytes(exc.response.body).decode("utf-8", "replace")[:300]
            raise HandshakeFailed(status, f"upstream refused the connection: HTTP {status} {body}".strip())
        raise HandshakeFailed(None, f"upstream handshake failed: {describe(exc)}")
    return WebsocketsSocket(
        stream, protocol, pending=events[1:], framed=head_only(received), ping_interval=ping_interval,
        ping_timeout=ping_timeout,
    )


async def _discard(stream: trio.abc.Stream | None) -> None:
    if stream is not None:
        await trio.aclose_forcefully(stream)


@asynccontextmanager
async def open_connection(
    url: str,
    headers: list[tuple[str, str]],
    *,
    ssl_context: ssl.SSLContext | None = None,
    ping_interval: float | None = PING_INTERVAL,
    ping_timeout: float = PING_TIMEOUT,
) -> AsyncIterator[WebsocketsSocket]:
    """A client WebSocket for the duration of the block; `HandshakeFailed` if it cannot open.

    `wss://` verifies the certificate and host name with `ssl.create_default_context()` unless `ssl_context`
    is given.  Leaving the block closes the socket (1000) if it is still open."""
    sock = await _connect(url, headers, ssl_context, ping_interval, ping_timeout)
    try:
        yield sock
    finally:
        with trio.CancelScope(shield=True):  # bounded by CLOSE_TIMEOUT
            await sock.close(1000, "")
