"""Both transports behind the seam (`relay.transport`), over real loopback sockets: messages, close codes,
broken peers, handshake refusals, subprotocols, headers, concurrency, keepalive, TLS, and interop with the
websockets library's own clients, the openai SDK and each other (every server and client pairing)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import ssl
import struct
from collections.abc import Awaitable, Callable
from functools import partial

import pytest
import trio
from websockets.utils import accept_key

from relay.transport import (
    TRANSPORT_NAMES,
    HandshakeFailed,
    IncomingConnection,
    MessageSocket,
    SocketClosed,
)
from relay.transport.registry import get_transport
from tests.tls import localhost_contexts

Start = Callable[..., Awaitable[int]]
PAIRS = [(server, client) for server in TRANSPORT_NAMES for client in TRANSPORT_NAMES]
pair_ids = [f"{server}-server+{client}-client" for server, client in PAIRS]
MiB = 1024 * 1024


@pytest.fixture
def start(nursery: trio.Nursery) -> Start:
    """Serve `handler` with the named transport inside the test's nursery; returns the port."""

    async def _start(transport: str, handler: Callable[[IncomingConnection], Awaitable[None]], **kw: object) -> int:
        return await nursery.start(partial(get_transport(transport).serve, handler, "127.0.0.1", 0, **kw))

    return _start


def connect(
    transport: str,
    port: int,
    path: str = "/v1/realtime",
    headers: list[tuple[str, str]] | None = None,
    scheme: str = "ws",
    **kw: object,
):
    return get_transport(transport).open_connection(f"{scheme}://127.0.0.1:{port}{path}", headers or [], **kw)


class Echo:
    """Echoes every message; "close:CODE:REASON" makes it close; remembers how the client left."""

    def __init__(self) -> None:
        self.requests: list = []
        self.closed: list[SocketClosed] = []
        self.done = trio.Event()

    async def __call__(self, conn: IncomingConnection) -> None:
        self.requests.append(conn.request)
        sock = await conn.accept("realtime" if "realtime" in conn.request.subprotocols else None)
        try:
            while True:
                message = await sock.get_message()
                if isinstance(message, str) and message.startswith("close:"):
                    _, code, reason = message.split(":", 2)
                    await sock.close(int(code), reason)
                    return
                await sock.send_message(message)
        except SocketClosed as exc:
            self.closed.append(exc)
        finally:
            self.done.set()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def read_head(stream: trio.SocketStream) -> bytes:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = await stream.receive_some(4096)
        if not chunk:
            break
        buf += chunk
    return buf


def upgrade_request(port: int, key: str) -> bytes:
    return (
        f"GET /v1/realtime HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def reset_on_close(stream: trio.SocketStream) -> None:
    """SO_LINGER 0: closing sends a TCP reset instead of a FIN."""
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


async def raw_server(nursery: trio.Nursery, after_upgrade: Callable[[trio.SocketStream], Awaitable[None]]) -> int:
    """A bare TCP server that answers the upgrade with 101 and then does `after_upgrade` (no WebSocket library)."""

    async def on_stream(stream: trio.SocketStream) -> None:
        head = (await read_head(stream)).decode("latin-1")
        key = next(
            line.split(":", 1)[1].strip()
            for line in head.split("\r\n")
            if line.lower().startswith("sec-websocket-key:")
        )
        await stream.send_all(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Accept: {accept_key(key)}\r\n\r\n"
            ).encode()
        )
        await after_upgrade(stream)

    listeners = await nursery.start(partial(trio.serve_tcp, on_stream, 0, host="127.0.0.1"))
    return listeners[0].socket.getsockname()[1]


# -- messages ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("server", "client"), PAIRS, ids=pair_ids)
async def test_text_binary_large_and_many_in_order(start: Start, server: str, client: str) -> None:
    port = await start(server, Echo())
    with trio.fail_after(30):
        async with connect(client, port) as sock:
            await sock.send_message("héllo ✓")
            assert await sock.get_message() == "héllo ✓"
            await sock.send_message(b"\x00\xff\x10")
            reply = await sock.get_message()
            assert reply == b"\x00\xff\x10" and isinstance(reply, bytes)
            big_text = "x" * (10 * MiB)
            await sock.send_message(big_text)
            assert await sock.get_message() == big_text
            big_binary = os.urandom(10 * MiB)
            await sock.send_message(big_binary)
            assert await sock.get_message() == big_binary

            count = 3000
            received: list[str | bytes] = []

            async def receive() -> None:
                for _ in range(count):
                    received.append(await sock.get_message())

            async with trio.open_nursery() as nursery:
                nursery.start_soon(receive)
                for i in range(count):
                    await sock.send_message(f'{{"type":"n","i":{i}}}')
            assert received == [f'{{"type":"n","i":{i}}}' for i in range(count)]


@pytest.mark.parametrize(("server", "client"), PAIRS, ids=pair_ids)
async def test_concurrent_senders_never_interleave_frames(start: Start, server: str, client: str) -> None:
    port = await start(server, Echo())
    size, per_task = 300_000, 15
    with trio.fail_after(30):
        async with connect(client, port) as sock:
            received: list[bytes] = []

            async def send(tag: int) -> None:
                for _ in range(per_task):
                    await sock.send_message(bytes([tag]) * size)

            async def receive() -> None:
                for _ in range(2 * per_task):
                    message = await sock.get_message()
                    assert isinstance(message, bytes)
                    received.append(message)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(receive)
                nursery.start_soon(send, 1)
                nursery.start_soon(send, 2)
    assert sorted(m[0] for m in received) == [1] * per_task + [2] * per_task
    assert all(len(m) == size and m == bytes([m[0]]) * size for m in received)


# -- closing ---------------------------------------------------------------------------------------

CLOSES = [(1000, ""), (1011, "upstream exploded"), (4001, "custom app code")]


@pytest.mark.parametrize(("server", "client"), PAIRS, ids=pair_ids)
@pytest.mark.parametrize(("code", "reason"), CLOSES)
async def test_close_codes_and_reasons_propagate_both_ways(
    start: Start, server: str, client: str, code: int, reason: str
) -> None:
    echo = Echo()
    port = await start(server, echo)
    with trio.fail_after(15):
        # The client closes: the server's get_message says how.
        async with connect(client, port) as sock:
            await sock.send_message("hi")
            assert await sock.get_message() == "hi"
            await sock.close(code, reason)
            with pytest.raises(SocketClosed):
                await sock.send_message("after close")
        await echo.done.wait()
        assert (echo.closed[0].code, echo.closed[0].reason) == (code, reason)
        # The server closes: the client's get_message says how, every time it is asked.
        async with connect(client, port) as sock:
            await sock.send_message(f"close:{code}:{reason}")
            for _ in range(2):
                with pytest.raises(SocketClosed) as info:
                    await sock.get_message()
                assert (info.value.code, info.value.reason) == (code, reason)


@pytest.mark.parametrize("server", TRANSPORT_NAMES)
async def test_close_while_another_task_waits_in_get_message(start: Start, server: str) -> None:
    # The relay's shape: the translator closes the client socket while the client reader waits for a message.
    seen: list[SocketClosed] = []
    closed_in = [0.0]

    async def close_soon(conn: IncomingConnection) -> None:
        sock = await conn.accept(None)

        async def reader() -> None:
            try:
                await sock.get_message()
            except SocketClosed as exc:
                seen.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.sleep(0.1)
            began = trio.current_time()
            await sock.close(1011, "relay internal error")
            closed_in[0] = trio.current_time() - began

    port = await start(server, close_soon)
    with trio.fail_after(15):
        async with connect(server, port) as sock:
            with pytest.raises(SocketClosed) as info:
                await sock.get_message()
    assert (info.value.code, info.value.reason) == (1011, "relay internal error")
    # Both transports report their own side's close as normal; the peer gets the real code.
    assert (seen[0].code, seen[0].reason) == (1000, "")
    assert closed_in[0] < 1.0


@pytest.mark.parametrize("client", TRANSPORT_NAMES)
async def test_close_gives_up_on_a_silent_peer(
    nursery: trio.Nursery, client: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import relay.transport.sansio.connection
    import relay.transport.tws

    monkeypatch.setattr(relay.transport.tws, "CLOSE_TIMEOUT", 0.5)
    monkeypatch.setattr(relay.transport.sansio.connection, "CLOSE_TIMEOUT", 0.5)
    port = await raw_server(nursery, lambda stream: trio.sleep_forever())  # never answers the close frame
    with trio.fail_after(10):
        async with connect(client, port) as sock:
            began = trio.current_time()
            await sock.close(1000, "bye")
            assert trio.current_time() - began < 2.0
            with pytest.raises(SocketClosed):
                await sock.get_message()


@pytest.mark.parametrize("client", TRANSPORT_NAMES)
@pytest.mark.parametrize("how", ["eof", "reset"])
async def test_server_disappearing_is_1006(nursery: trio.Nursery, client: str, how: str) -> None:
    async def drop(stream: trio.SocketStream) -> None:
        await trio.sleep(0.1)
        if how == "reset":
            reset_on_close(stream)
        await stream.aclose()

    port = await raw_server(nursery, drop)
    with trio.fail_after(15):
        async with connect(client, port) as sock:
            with pytest.raises(SocketClosed) as info:
                await sock.get_message()
            assert info.value.code == 1006
            with pytest.raises(SocketClosed):
                await sock.send_message("anyone?")


@pytest.mark.parametrize("server", TRANSPORT_NAMES)
@pytest.mark.parametrize("how", ["eof", "reset"])
async def test_client_disappearing_is_1006(start: Start, server: str, how: str) -> None:
    echo = Echo()
    port = await start(server, echo)
    with trio.fail_after(15):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(upgrade_request(port, base64.b64encode(os.urandom(16)).decode()))
        assert (await read_head(stream)).startswith(b"HTTP/1.1 101")
        if how == "reset":
            reset_on_close(stream)
        await stream.aclose()
        await echo.done.wait()
    assert echo.closed[0].code == 1006


# -- handshakes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("server", "client"), PAIRS, ids=pair_ids)
async def test_reject_with_status_and_json_body(start: Start, server: str, client: str) -> None:
    async def refuse(conn: IncomingConnection) -> None:
        await conn.reject(401, json.dumps({"error": {"message": "Incorrect API key provided."}}).encode())

    port = await start(server, refuse)
    with trio.fail_after(15), pytest.raises(HandshakeFailed) as info:
        async with connect(client, port):
            pytest.fail("the handshake should have failed")
    assert info.value.status == 401
    assert "401" in info.value.message and "Incorrect API key provided." in info.value.message


@pytest.mark.parametrize("server", TRANSPORT_NAMES)
async def test_reject_is_readable_by_the_websockets_client(start: Start, server: str) -> None:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect as sync_connect

    async def refuse(conn: IncomingConnection) -> None:
        await conn.reject(404, b'{"error": "nope"}')

    port = await start(server, refuse)

    def attempt() -> None:
        with pytest.raises(InvalidStatus) as info:
            sync_connect(f"ws://127.0.0.1:{port}/x", open_timeout=10, proxy=None)
        assert info.value.response.status_code == 404
        assert info.value.response.headers["Content-Type"] == "application/json"
        assert json.loads(info.value.response.body) == {"error": "nope"}

    await trio.to_thread.run_sync(attempt)


@pytest.mark.parametrize("client", TRANSPORT_NAMES)
async def test_unreachable_port(client: str) -> None:
    with trio.fail_after(15), pytest.raises(HandshakeFailed) as info:
        async with connect(client, free_port()):
            pytest.fail("nothing listens there")
    assert info.value.status is None
    assert "upstream unreachable" in info.value.message


@pytest.mark.parametrize("client", TRANSPORT_NAMES)
async def test_connect_timeout(nursery: trio.Nursery, client: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import relay.transport.sansio.client
    import relay.transport.tws

    monkeypatch.setattr(relay.transport.tws, "CONNECT_TIMEOUT", 0.5)
    monkeypatch.setattr(relay.transport.sansio.client, "CONNECT_TIMEOUT", 0.5)

    async def silent(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    listeners = await nursery.start(partial(trio.serve_tcp, silent, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    with trio.fail_after(10), pytest.raises(HandshakeFailed) as info:
        async with connect(client, port):
            pass
    assert info.value.status is None


@pytest.mark.parametrize(("server", "client"), PAIRS, ids=pair_ids)
async def test_path_and_headers_reach_the_handler(start: Start, server: str, client: str) -> None:
    echo = Echo()
    port = await start(server, echo)
    headers = [("Authorization", "Bearer sk-test"), ("OpenAI-Beta", "realtime=v1")]
    with trio.fail_after(15):
        async with connect(client, port, "/v1/realtime?model=m1", headers) as sock:
            await sock.send_message("x")
            await sock.get_message()
    request = echo.requests[0]
    assert request.path == "/v1/realtime?model=m1"
    assert request.header("authorization") == "Bearer sk-test"
    assert request.header("OPENAI-BETA") == "realtime=v1"
    assert request.header("x-missing") is None


@pytest.mark.parametrize("server", TRANSPORT_NAMES)
async def test_subprotocol_negotiation_and_no_compression(start: Start, server: str) -> None:
    from websockets.sync.client import connect as sync_connect

    echo = Echo()
    port = await start(server, echo)
    offered = ["realtime", "openai-insecure-api-key.sk-x", "openai-beta.realtime-v1"]

    def talk() -> tuple[str | None, list, str]:
        # The websockets client offers permessage-deflate by default; the relay never accepts it.
        with sync_connect(
            f"ws://127.0.0.1:{port}/v1/realtime", subprotocols=offered, open_timeout=10, proxy=None
        ) as ws:
            ws.send("ping?")
            return ws.subprotocol, list(ws.protocol.extensions), ws.recv(timeout=10)

    subprotocol, extensions, reply = await trio.to_thread.run_sync(talk)
    assert subprotocol == "realtime" and reply == "ping?"
    assert extensions == []
    assert echo.requests[0].subprotocols == tuple(offered)


async def test_malformed_requests_get_an_http_error(start: Start) -> None:
    port = await start("websockets", Echo())
    with trio.fail_after(15):
        for request, status in [
            (b"GARBAGE\r\n\r\n", b"400"),
            (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"426"),  # a browser tab, not a WebSocket
            (b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", b"400"),
        ]:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            await stream.send_all(request)
            head = await read_head(stream)
            assert head.startswith(b"HTTP/1.1 " + status), head
            await stream.aclose()


@pytest.mark.parametrize("client", TRANSPORT_NAMES)
async def test_frames_split_anywhere_and_fragments_arrive_whole(nursery: trio.Nursery, client: str) -> None:
    """Both transports read the socket themselves: a frame may come a byte at a time, a message in fragments with
    a ping between them, and each message still arrives whole, in order, with the ping answered."""
    tail = bytes(range(256)) + bytes(44)
    frames = (
        bytes([0x81, 5]) + b"hello"  # text
        + bytes([0x01, 3]) + b"fra"  # text, not final
        + bytes([0x89, 2]) + b"hi"  # a ping between the fragments
        + bytes([0x80, 4]) + "gmé".encode()  # continuation, final
        + bytes([0x82, 126]) + struct.pack("!H", len(tail)) + tail  # binary with a 16-bit length
    )
    pong = trio.Event()

    async def after_upgrade(stream: trio.SocketStream) -> None:
        for i in range(len(frames)):
            await stream.send_all(frames[i:i + 1])
            await trio.sleep(0.001)
        data = b""
        while len(data) < 8:  # the pong: masked, as a client's frames are
            data += await stream.receive_some(100)
        key = data[2:6]
        assert data[:2] == bytes([0x8A, 0x82]) and bytes(b ^ key[i] for i, b in enumerate(data[6:8])) == b"hi"
        pong.set()
        await stream.send_all(bytes([0x88, 2]) + struct.pack("!H", 1000))
        await stream.receive_some(100)  # the client's close frame: the server closes TCP first (RFC 6455 7.1.1)
        await stream.aclose()

    port = await raw_server(nursery, after_upgrade)
    with trio.fail_after(10):
        async with connect(client, port) as sock:
            assert [await sock.get_message() for _ in range(3)] == ["hello", "fragmé", tail]
            with pytest.raises(SocketClosed) as info:
                await sock.get_message()
            assert info.value.code == 1000
            assert pong.is_set()


# -- keepalive -------------------------------------------------------------------------------------


@pytest.mark.parametrize("server", TRANSPORT_NAMES)
async def test_pings_are_answered(start: Start, server: str) -> None:
    from websockets.sync.client import connect as sync_connect

    port = await start(server, Echo())

    def ping() -> bool:
        with sync_connect(f"ws://127.0.0.1:{port}/", open_timeout=10, proxy=None) as ws:
            return all(ws.ping().wait(5) for _ in range(3))

    assert await trio.to_thread.run_sync(ping)


async def test_keepalive_detects_a_dead_peer(nursery: trio.Nursery) -> None:
    # The peer completes the handshake, then never reads again: no pong ever comes back.
    port = await raw_server(nursery, lambda stream: trio.sleep_forever())
    with trio.fail_after(10):
        async with connect("websockets", port, ping_interval=0.2, ping_timeout=0.3) as sock:
            with pytest.raises(SocketClosed) as info:
                await sock.get_message()
    assert (info.value.code, info.value.reason) == (1006, "keepalive ping timeout")


@pytest.mark.parametrize("server", TRANSPORT_NAMES)
async def test_keepalive_keeps_an_idle_live_peer(start: Start, server: str) -> None:
    port = await start(server, Echo())
    with trio.fail_after(10):
        async with connect("websockets", port, ping_interval=0.05, ping_timeout=0.2) as sock:
            with trio.move_on_after(1.0) as idle:
                await sock.get_message()  # nothing comes; pings go out and pongs come back meanwhile
            assert idle.cancelled_caught
            # A reader that paused (backpressure) past the deadline is not mistaken for a dead peer.
            await trio.sleep(0.5)
            await sock.send_message("still there?")
            assert await sock.get_message() == "still there?"


# -- protocol errors (the websockets transport) ----------------------------------------------------


async def test_invalid_utf8_and_oversized_messages_close_the_connection(start: Start) -> None:
    from websockets.exceptions import ConnectionClosedError
    from websockets.sync.client import connect as sync_connect

    echo = Echo()
    port = await start("websockets", echo)

    def bad_text() -> int | None:
        with sync_connect(f"ws://127.0.0.1:{port}/", open_timeout=10, proxy=None) as ws:
            ws.send(b"\xff\xfe", text=True)
            with pytest.raises(ConnectionClosedError):
                ws.recv(timeout=10)
            return ws.protocol.close_code

    assert await trio.to_thread.run_sync(bad_text) == 1007
    await echo.done.wait()
    assert echo.closed[0].code == 1007

    with trio.fail_after(20):
        async with connect("websockets", port) as sock:
            await sock.send_message(b"\0" * (32 * MiB + 1))
            with pytest.raises(SocketClosed) as info:
                await sock.get_message()
    assert info.value.code == 1009


# -- TLS -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server, client) contexts for a self-signed 127.0.0.1 certificate."""
    return localhost_contexts(tmp_path_factory.mktemp("tls"))


@pytest.mark.parametrize(("server", "client"), PAIRS, ids=pair_ids)
async def test_wss_verifies_the_certificate(
    start: Start, tls: tuple[ssl.SSLContext, ssl.SSLContext], server: str, client: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import relay.transport.tws

    # trio-websocket loses the ssl error and waits for its connect timeout instead; keep that short.
    monkeypatch.setattr(relay.transport.tws, "CONNECT_TIMEOUT", 1.0)
    echo = Echo()
    port = await start(server, echo, ssl_context=tls[0])
    with trio.fail_after(15):
        async with connect(client, port, scheme="wss", ssl_context=tls[1]) as sock:
            await sock.send_message("secret")
            assert await sock.get_message() == "secret"
            payload = os.urandom(MiB)
            await sock.send_message(payload)
            assert await sock.get_message() == payload
            await sock.close(4001, "tls bye")
        await echo.done.wait()
        assert (echo.closed[0].code, echo.closed[0].reason) == (4001, "tls bye")
        # The default context does not trust a self-signed certificate.
        with pytest.raises(HandshakeFailed) as info:
            async with connect(client, port, scheme="wss"):
                pytest.fail("the certificate should have been refused")
    assert info.value.status is None
    if client == "websockets":
        assert "CERTIFICATE_VERIFY_FAILED" in info.value.message


# -- interop ---------------------------------------------------------------------------------------


async def test_websockets_asyncio_client_against_the_websockets_server(start: Start) -> None:
    from websockets.asyncio.client import connect as async_connect

    echo = Echo()
    port = await start("websockets", echo)

    async def talk() -> list[str | bytes]:
        async with async_connect(f"ws://127.0.0.1:{port}/v1/realtime", proxy=None, max_size=None) as ws:
            replies = []
            for message in ["one", b"two", "x" * (2 * MiB)]:
                await ws.send(message)
                replies.append(await ws.recv())
            await ws.send(["frag", "mented ", "é"])  # one text message in three frames
            replies.append(await ws.recv())
            await ws.close(4001, "asyncio done")
            return replies

    replies = await trio.to_thread.run_sync(asyncio.run, talk())
    assert replies == ["one", b"two", "x" * (2 * MiB), "fragmented é"]
    await echo.done.wait()
    assert (echo.closed[0].code, echo.closed[0].reason) == (4001, "asyncio done")


@pytest.mark.parametrize("server", TRANSPORT_NAMES)
async def test_openai_sdk_against_the_server(start: Start, server: str) -> None:
    from openai import OpenAI

    seen: list = []

    async def realtime(conn: IncomingConnection) -> None:
        seen.append(conn.request)
        sock: MessageSocket = await conn.accept(None)
        error = {
            "type": "error",
            "event_id": "evt_1",
            "error": {"type": "invalid_request_error", "message": "hello from the relay"},
        }
        await sock.send_message(json.dumps(error))
        try:
            while True:
                event = json.loads(await sock.get_message())
                error["error"]["message"] = f"got {event['type']}"
                await sock.send_message(json.dumps(error))
        except SocketClosed:
            pass

    port = await start(server, realtime)

    def talk() -> list[str]:
        client = OpenAI(api_key="sk-transport", base_url=f"http://127.0.0.1:{port}/v1")
        with client.realtime.connect(model="m1") as conn:
            messages = [conn.recv().error.message]
            conn.send({"type": "response.create"})
            messages.append(conn.recv().error.message)
            return messages

    assert await trio.to_thread.run_sync(talk) == ["hello from the relay", "got response.create"]
    assert seen[0].header("authorization") == "Bearer sk-transport"
    assert seen[0].path.startswith("/v1/realtime?model=m1")
