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
