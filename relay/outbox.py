"""`Outbox`: the queue in front of one socket's writer, bounded in bytes."""

from __future__ import annotations

import trio

from relay.translate import Close

# A second bound beside the byte bound: the channel's own, so that a flood of tiny events is bounded too.
MAX_BATCHES = 65536


class Outbox:
    """Batches of encoded messages on their way to one socket, in order.

    `put` never waits: a translator step must not stop on a slow socket, and the other direction must go on.
    It refuses a batch that would take the queue past `limit` bytes, unless the queue is empty (one large
    batch always goes), and the caller decides what a refusal means.  The writer takes everything queued
    at once, so a burst leaves in one write whatever the number of steps that made it."""

    __slots__ = ("_receive", "_send", "close", "limit", "peak", "pending")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.pending = 0  # bytes put and not yet written
        self.peak = 0
        self.close: Close | None = None  # what the writer does after the last batch
        self._send, self._receive = trio.open_memory_channel[list[bytes]](MAX_BATCHES)

    def put(self, batch: list[bytes]) -> bool:
        size = 0
        for message in batch:
            size += len(message)
        if self.pending and self.pending + size > self.limit:
            return False
        try:
            self._send.send_nowait(batch)
        except trio.WouldBlock:
            return False
        except trio.ClosedResourceError:
            return True  # finished: the socket is closing and nothing more will be written
        self.pending += size
        if self.pending > self.peak:
            self.peak = self.pending
        return True

    def finish(self, close: Close | None = None) -> None:
        """No more batches: the writer sends what is queued, then closes with `close` if given."""
        if close is not None and self.close is None:
            self.close = close
        self._send.close()

    async def take(self) -> list[bytes] | None:
        """Every message queued (waiting for the first), or None once finished and empty."""
        try:
            messages = await self._receive.receive()
        except trio.EndOfChannel:
            return None
        receive = self._receive.receive_nowait
        try:
            while True:
                messages.extend(receive())  # the first batch is ours since put: extend it in place
        except (trio.WouldBlock, trio.EndOfChannel):
            pass
        return messages

    def written(self, messages: list[bytes]) -> None:
        for message in messages:
            self.pending -= len(message)
