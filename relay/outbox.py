"""`Outbox`: the queue in front of one socket's writer, bounded in bytes."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import trio

from relay.translate import Close

# A second bound beside the byte bound, so that a flood of tiny events is bounded too.
MAX_BATCHES = 65536


class Outbox:
    """Batches of encoded messages on their way to one socket, in order.

    `put` never waits: a translator step must not stop on a slow socket, and the other direction must go on.
    It refuses a batch that would take the queue past `limit` bytes, unless the queue is empty (one large
    batch always goes), and the caller decides what a refusal means.  The writer takes everything queued
    at once, so a burst leaves in one write whatever the number of steps that made it.

    While nothing is queued and the writer is idle, `put` writes through (`direct`, the socket's `send_now`):
    a message the kernel takes at once costs no trip to the writer task.  What the kernel leaves stays with
    the socket, counted here, and an empty batch wakes the writer to send it before anything later.

    The queue is one list and the parked writer task, not a trio memory channel: every session holds one
    outbox per socket for its whole life, and a channel (its state, deque and two ends) cost more memory
    than the rest of an idle session's translator."""

    __slots__ = ("_batches", "_finished", "_messages", "_oldest", "_size", "_waiter", "_writing", "close", "direct",
                 "latency", "limit", "peak", "pending")

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
        self._messages: list[bytes] = []  # every message queued and not yet taken, in order
        self._size = 0  # their bytes
        self._batches = 0  # puts behind them (an empty one counts: it wakes the writer)
        self._waiter: trio.lowlevel.Task | None = None  # the writer, parked in take() on an empty queue

    def put(self, batch: list[bytes], at: float = 0.0) -> bool:
        """Queue `batch` (or write it through); `at`: when the input that made it was read (0: not timed)."""
        if self._finished:
            return True  # the socket is closing and nothing more will be written
        if not self.pending and self.direct is not None:
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
        if self._batches >= MAX_BATCHES:
            return False
        self._messages += batch
        self._size += size
        self._batches += 1
        self.pending += size
        if at and not self._oldest:
            self._oldest = at
        if self.pending > self.peak:
            self.peak = self.pending
        self._wake()
        return True

    def finish(self, close: Close | None = None) -> None:
        """No more batches: the writer sends what is queued, then closes with `close` if given."""
        if close is not None and self.close is None:
            self.close = close
        self._finished = True
        self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            trio.lowlevel.reschedule(waiter)

    async def take(self) -> tuple[list[bytes], int] | None:
        """Every message queued (waiting for the first) and their size in bytes, or None once finished and empty.
        Always a cancellation point; one task (the socket's writer) takes."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while not self._batches:
            if self._finished:
                return None
            self._waiter = trio.lowlevel.current_task()
            await trio.lowlevel.wait_task_rescheduled(self._abort)
        messages, size = self._messages, self._size
        self._messages, self._size, self._batches = [], 0, 0
        self._writing, self._oldest = self._oldest, 0.0
        return messages, size

    def _abort(self, _: object) -> trio.lowlevel.Abort:
        # Cancelled: trio reschedules the writer itself, so a put or finish before it runs must not (trio refuses a
        # second reschedule, and that error ended the relay's shutdown).
        self._waiter = None
        return trio.lowlevel.Abort.SUCCEEDED

    def written(self, size: int) -> None:
        self.pending -= size
        if self._writing and self.latency is not None:
            self.latency(trio.current_time() - self._writing)
        self._writing = 0.0
