"""How an emulated connection ages: resumption updates, ``goAway`` and the deadline after it.

A mixin of ``Session`` (``session.py``); the bookkeeping behind the handles is ``registry.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio
from trio_websocket import ConnectionClosed

from .wire import duration_text

if TYPE_CHECKING:
    from trio_websocket import WebSocketConnection

    from relay.gate import Gate

    from .options import EmulatorOptions
    from .registry import LogicalSession, Registry
    from .setup import SessionConfig

__all__ = ["DEADLINE_EXPIRED", "Lifetime"]

# What Gemini closes with once a goAway's timeLeft has run out (protocols.md 2.6).
DEADLINE_EXPIRED = (1011, "Deadline expired before operation could complete.")


class Lifetime:
    """Resumption updates and goAway for one connection; the session provides the state and I/O."""

    _registry: Registry
    _options: EmulatorOptions
    _config: SessionConfig | None
    _logical: LogicalSession | None
    _nursery: trio.Nursery | None
    _ws: WebSocketConnection
    _send_lock: Gate
    # Index of the newest client message of this connection (setup is 0).
    _client_index: int
    _goaway_sent: bool

    if TYPE_CHECKING:  # implemented by Session; declared here only, so nothing shadows them

        async def _send(self, message: dict[str, Any], *, binary: bool = False) -> None: ...

        async def _close(self, code: int, reason: str) -> None: ...

    # -- sessionResumptionUpdate ---------------------------------------------------------------

    async def _resumable(self, history: list[dict[str, Any]], *, binary: bool = False) -> None:
        """With resumption set up, issue a handle that restores ``history`` (superseding the older ones)."""
        if self._config is None or self._config.resumption is None:
            return
        assert self._logical is not None
        handle = self._registry.issue_handle(self._logical, history)
        await self._send({"sessionResumptionUpdate": self._update(newHandle=handle, resumable=True)}, binary=binary)

    async def _not_resumable(self, *, binary: bool = False) -> None:
        """While a tool call is outstanding the session cannot be resumed: no handle, ``resumable: false``."""
        if self._config is None or self._config.resumption is None:
            return
        await self._send({"sessionResumptionUpdate": self._update(resumable=False)}, binary=binary)

    def _update(self, **fields: Any) -> dict[str, Any]:
        assert self._config is not None
        if self._config.transparent:
            # proto int64 in JSON is a string; it tells a transparent client what to replay.
            fields["lastConsumedClientMessageIndex"] = str(self._client_index)
        return fields

    # -- goAway --------------------------------------------------------------------------------

    def _start_clock(self) -> None:
        """After setupComplete: schedule ``goaway_after_seconds``, if set."""
        assert self._nursery is not None
        if self._options.goaway_after_seconds > 0:
            self._nursery.start_soon(self._go_away_later, self._options.goaway_after_seconds)

    async def _go_away_later(self, seconds: float) -> None:
        await trio.sleep(seconds)
        try:
            await self._go_away()
        except ConnectionClosed:
            pass  # the connection ended meanwhile; the session's main loop sees it too

    async def _go_away(self, *, binary: bool = False) -> None:
        """Send goAway (once per connection), then close the connection when its time is up."""
        if self._goaway_sent:
            return
        self._goaway_sent = True
        assert self._nursery is not None
        time_left = self._options.goaway_time_left
        await self._send({"goAway": {"timeLeft": duration_text(time_left)}}, binary=binary)
        self._nursery.start_soon(self._deadline, time_left)

    async def _deadline(self, time_left: float) -> None:
        await trio.sleep(time_left)
        # Taken so that the close frame never lands inside a batch a reply is writing.
        async with self._send_lock:
            await self._close(*DEADLINE_EXPIRED)
