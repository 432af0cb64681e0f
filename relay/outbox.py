"""`Outbox`: the queue in front of one socket's writer, bounded in bytes."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import trio

from relay.translate import Close

# A second bound beside the byte bound: the channel's own, so that a flood of tiny events is bounded too.
MAX_BATCHES = 65536


class Outbox:
    """Batches of encoded messages on their way to one socket, in order.

    `put` never waits: a translator step must not stop on a slow socket, and the other direction must go on.
    It refuses a batch that would take the queue past `limit` bytes, unless the queue is empty (one large
    batch always goes), and the caller decides what a refusal means.  The writer takes everything queued
    at once, so a burst leaves in one write whatever the number of steps that made it.

    While nothing is queued and the writer is idle, `put` writes through (`direct`, the socket's `send_now`):
    a message the kernel takes at once costs no trip to the writer task.  What the kernel leaves stays with
    the socket, counted here, and an empty batch wakes the writer to send it before anything later."""

    __slots__ = ("_finished", "_oldest", "_receive", "_send", "_writing", "close", "direct", "latency", "limit", "peak",
                 "pending")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.pending = 0  # bytes put and not yet written
        self.peak = 0
        self.close: Close | None = None  # what the writer does after the last batch
        self.direct: Callable[[Sequence[bytes]], int] | None = None
        # Observes seconds from the read that made a batch (`put`'s `at`) to the batch's write: the relay's own
        # latency.  Timed per write, by the oldest batch in it.
        self.latency: Callable[[float], None] | None = None
        self._oldest = 0.0  # `at` of the oldest timed batch queued and not yet taken
        self._writing = 0.0  # `at` of the oldest timed batch in the write under way
        self._finished = False
        self._send, self._receive = trio.open_memory_channel[tuple[list[bytes], int]](MAX_BATCHES)

    def put(self, batch: list[bytes], at: float = 0.0) -> bool:
        """Queue `batch` (or write it through); `at`: when the input that made it was read (0: not timed)."""
        if not self.pending and self.direct is not None and not self._finished:
            left = self.direct(batch)
            if left == 0:
                if at and self.latency is not None:
                    self.latency(trio.current_time() - at)
                return True
            if left > 0:
                batch, size = [], left
            else:
                size = sum(map(len, batch))
        else:
            size = sum(map(len, batch))
            if self.pending and self.pending + size > self.limit:
                return False
        try:
            self._send.send_nowait((batch, size))
        except trio.WouldBlock:
            return False
        except trio.ClosedResourceError:
            return True  # finished: the socket is closing and nothing more will be written
        self.pending += size
        if at and not self._oldest:
            self._oldest = at
        if self.pending > self.peak:
            self.peak = self.pending
        return True

    def finish(self, close: Close | None = None) -> None:
        """No more batches: the writer sends what is queued, then closes with `close` if given."""
        if close is not None and self.close is None:
            self.close = close
        self._finished = True
        self._send.close()

    async def take(self) -> tuple[list[bytes], int] | None:
        """Every message queued (waiting for the first) and their size in bytes, or None once finished and empty."""
        try:
            messages, size = await self._receive.receive()
        except trio.EndOfChannel:
            return None
        receive = self._receive.receive_nowait
        try:
            while True:
                more, more_size = receive()
                messages.extend(more)  # the first batch is ours since put: extend it in place
                size += more_size
        except (trio.WouldBlock, trio.EndOfChannel):
            pass
        self._writing, self._oldest = self._oldest, 0.0
        return messages, size

    def written(self, size: int) -> None:
        self.pending -= size
        if self._writing and self.latency is not None:
            self.latency(trio.current_time() - self._writing)
        self._writing = 0.0
