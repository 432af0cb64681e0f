"""The trio-websocket internals the relay reaches (relay/transport/tws_internals.py), checked on real connections:
an upgrade of trio-websocket that moves one fails here, by name, before it fails anywhere else; and the import
direction of the transport package (the seam imports no transport)."""

from __future__ import annotations

import ast
import importlib.metadata
from pathlib import Path

import pytest
import trio
import trio_websocket as tws

import relay.transport.tws
from relay.transport.registry import get_transport
from relay.transport.tws_internals import missing

PACKAGE = Path(relay.transport.__file__).parent
UPGRADE = (f"trio-websocket {importlib.metadata.version('trio-websocket')} moved internals the relay uses; update "
           "relay/transport/tws_internals.py (and its pin in pyproject.toml)")


async def test_every_internal_is_where_the_adapter_looks(nursery: trio.Nursery) -> None:
    accepted: list[tws.WebSocketConnection] = []

    async def handler(request: tws.WebSocketRequest) -> None:
        accepted.append(await request.accept())
        await trio.sleep_forever()

    server = await nursery.start(tws.serve_websocket, handler, "127.0.0.1", 0, None)
    async with tws.open_websocket("127.0.0.1", server.port, "/", use_ssl=False) as client:
        with trio.fail_after(5):
            while not accepted:
                await trio.sleep(0.01)
        assert missing(client) == [], UPGRADE
        assert missing(accepted[0]) == [], UPGRADE
    assert missing(server) == [], UPGRADE


async def test_without_its_internals_the_socket_sends_message_by_message(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trio-websocket without them still relays, more slowly: batching is off, nothing else changes."""
    monkeypatch.setattr(relay.transport.tws, "missing", lambda ws: ["_stream_lock"])
    transport = get_transport("trio-websocket")
    got: list[str | bytes] = []

    async def echo(conn) -> None:
        sock = await conn.accept()
        got.extend(await sock.get_messages())
        await sock.send_texts([b"one", b"two"])
        assert sock.send_now([b"three"]) == -1  # no write-through either
        await sock.send_texts([b"three"])
        await trio.sleep_forever()

    port = await nursery.start(transport.serve, echo, "127.0.0.1", 0)
    async with transport.open_connection(f"ws://127.0.0.1:{port}/", []) as sock:
        await sock.send_texts([b"hello"])
        with trio.fail_after(5):
            assert [await sock.get_message() for _ in range(3)] == ["one", "two", "three"]
    assert got == ["hello"]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_the_seam_imports_no_transport_and_only_the_adapter_touches_trio_websocket_internals() -> None:
    seam = _imports(PACKAGE / "__init__.py")
    assert not {name for name in seam if name.startswith(("relay", "trio_websocket", "websockets", "wsproto"))}, seam
    for path in PACKAGE.rglob("*.py"):
        if path.name == "tws_internals.py":
            continue
        source = path.read_text()
        for name in ("._recv_channel", "._wsproto", "._stream_lock", "._close_reason", "._abort_web_socket",
                     "._open_handshake", "._close_handshake", "._reader_task", "._handle_connection"):
            assert name not in source, f"{path.relative_to(PACKAGE.parent.parent)} reaches {name} itself"


def _frame(opcode: int, payload: bytes, *, fin: bool = True, key: bytes | None = None) -> bytes:
    n = len(payload)
    mask = 0x80 if key is not None else 0
    if n < 126:
        head = bytes([opcode | (0x80 if fin else 0), n | mask])
    elif n < 65536:
        head = bytes([opcode | (0x80 if fin else 0), 126 | mask]) + n.to_bytes(2, "big")
    else:
        head = bytes([opcode | (0x80 if fin else 0), 127 | mask]) + n.to_bytes(8, "big")
    if key is None:
        return head + payload
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


@pytest.mark.parametrize("masked", [True, False], ids=["server", "client"])
def test_frames_split_anywhere_give_whole_messages_and_the_rest_to_wsproto_in_order(masked: bool) -> None:
    import random

    from relay.transport.streams import Frames

    rng = random.Random(14)
    key = b"\x01\x02\x03\x04" if masked else None
    text = "é" * 100
    binary = bytes(range(256)) * 300  # a 16-bit length, and more than one read
    stream = [
        (_frame(0x1, b"hello", key=key), "hello"),
        (_frame(0x9, b"ping", key=key), None),  # control frames go to wsproto
        (_frame(0x2, binary, key=key), binary),
        (_frame(0x1, b"fra", fin=False, key=key), None),  # a fragmented message is wsproto's, every fragment
        (_frame(0xA, b"", key=key), None),
        (_frame(0x0, "gmé".encode(), key=key), None),
        (_frame(0x1, text.encode(), key=key), text),
        (_frame(0x2, b"\0" * 300_000, key=key), None),  # too large to wait for whole: wsproto parses it as it comes
        (_frame(0x1, b"after", key=key), "after"),
        (_frame(0x8, b"\x03\xe8", key=key), None),  # a close: everything after it is wsproto's
        (_frame(0x1, b"late", key=key), None),
    ]
    wire = b"".join(frame for frame, _ in stream)
    for _ in range(20):
        frames = Frames(masked=masked, limit=1 << 20)
        cuts = sorted(rng.sample(range(1, len(wire)), 40))
        messages: list[str | bytes] = []
        raw = b""
        for start, end in zip([0, *cuts], [*cuts, len(wire)], strict=True):
            for is_raw, item in frames.split(wire[start:end]):
                if is_raw:
                    raw += item
                else:
                    messages.append(item)
        assert messages == [message for _, message in stream if message is not None]
        assert raw == b"".join(frame for frame, message in stream if message is None)


@pytest.mark.parametrize(
    "frame",
    [
        _frame(0x1, b"\xff\xfe", key=b"abcd"),  # invalid UTF-8: wsproto closes with 1007
        _frame(0x1, b"unmasked"),  # a client frame must be masked
        _frame(0x0, b"stray continuation", key=b"abcd"),
        _frame(0x9, b"x" * 126, key=b"abcd"),  # a control frame too long
        _frame(0x3, b"", key=b"abcd"),  # a reserved opcode
        bytes([0xC1, 0x80]) + b"abcd",  # RSV1 without an extension
    ],
)
def test_frames_leave_what_wsproto_fails_and_everything_after_to_it(frame: bytes) -> None:
    from relay.transport.streams import Frames

    frames = Frames(masked=True, limit=1 << 20)
    after = _frame(0x1, b"next", key=b"abcd")
    assert frames.split(frame + after) == [(True, frame + after)]
    assert frames.split(after) == [(True, after)]
