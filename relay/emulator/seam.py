"""The emulator over the relay's transport seam (``relay.transport``), for ``EmulatorOptions.transport``.

The emulator's sessions are written against trio-websocket's connection API. To serve them with
another transport (the benchmark wants the websockets sans-IO one, whose per-message cost is a third
of trio-websocket's, so that the load side is not what saturates first), these adapters give a seam
socket that API: ``get_message`` / ``send_message`` / ``aclose`` raising trio-websocket's
``ConnectionClosed``, which is what ``Session`` catches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trio_websocket import CloseReason, ConnectionClosed

if TYPE_CHECKING:
    from relay.transport import MessageSocket


class SeamWebSocket:
    """A seam ``MessageSocket`` with the part of trio-websocket's ``WebSocketConnection`` API sessions use."""

    __slots__ = ("_sock",)

    def __init__(self, sock: MessageSocket) -> None:
        self._sock = sock

    async def get_message(self) -> str | bytes:
        from relay.transport import SocketClosed

        try:
            return await self._sock.get_message()
        except SocketClosed as exc:
            raise ConnectionClosed(CloseReason(exc.code or 1006, exc.reason)) from None

    async def send_message(self, message: str | bytes) -> None:
        from relay.transport import SocketClosed

        try:
            await self._sock.send_message(message)
        except SocketClosed as exc:
            raise ConnectionClosed(CloseReason(exc.code or 1006, exc.reason)) from None

    async def send_texts(self, messages: list[bytes]) -> None:
        from relay.transport import SocketClosed

        try:
            await self._sock.send_texts(messages)
        except SocketClosed as exc:
            raise ConnectionClosed(CloseReason(exc.code or 1006, exc.reason)) from None

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None:
        from relay.transport import SocketClosed

        try:
            await self._sock.close(code, reason or "")
        except SocketClosed:
            pass  # already closed: what aclose does on trio-websocket too
