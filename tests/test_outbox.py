"""The outbox in front of each socket's writer: order, bounds, write-through and the end."""

from __future__ import annotations

import trio

from relay.outbox import Outbox
from relay.translate import Close


async def test_a_parked_writer_takes_everything_queued_in_order() -> None:
    box = Outbox(1000)
    got: list[tuple[list[bytes], int] | None] = []

    async def writer() -> None:
        got.append(await box.take())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer)
        await trio.testing.wait_all_tasks_blocked()
        assert box.put([b"a", b"bc"])
        assert box.put([b"def"])
    assert got == [([b"a", b"bc", b"def"], 6)]
    assert box.pending == 6 and box.peak == 6
    box.written(6)
    assert box.pending == 0


async def test_the_byte_bound_refuses_a_batch_unless_the_queue_is_empty() -> None:
    box = Outbox(10)
    assert box.put([b"x" * 50])  # one large batch always goes
    assert not box.put([b"y"])
    taken = await box.take()
    assert taken == ([b"x" * 50], 50)
    box.written(50)
    assert box.put([b"y" * 6]) and not box.put([b"z" * 6])


async def test_finish_ends_a_waiting_writer_after_what_is_queued() -> None:
    box = Outbox(100)
    results: list[object] = []

    async def writer() -> None:
        while (taken := await box.take()) is not None:
            results.append(taken[0])
        results.append(box.close)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer)
        await trio.testing.wait_all_tasks_blocked()
        box.put([b"last"])
        box.finish(Close(1001, "going away"))
        assert box.put([b"dropped"])  # accepted and dropped: the socket is closing
    assert results == [[b"last"], Close(1001, "going away")]


async def test_write_through_and_what_the_kernel_left() -> None:
    box = Outbox(100)
    left = [0]
    box.direct = lambda batch: left[0]
    assert box.put([b"now"])
    assert box.pending == 0  # written at once: no trip to the writer
    left[0] = 2
    assert box.put([b"part"])
    # The socket holds the rest; an empty batch wakes the writer to send it before anything later.
    assert await box.take() == ([], 2)


async def test_a_cancelled_take_leaves_the_outbox_usable() -> None:
    box = Outbox(100)
    with trio.move_on_after(0.01):
        await box.take()
    box.put([b"after"])
    assert await box.take() == ([b"after"], 5)


async def test_finish_after_the_writer_was_cancelled_but_before_it_ran() -> None:
    """Found by the storm test: a drain's finish() reached an outbox whose parked writer had just been cancelled
    (scheduled to resume, not yet run); waking it again raised inside trio and ended the relay's shutdown."""
    box = Outbox(100)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(box.take)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()  # the writer is now scheduled to resume with Cancelled
        box.finish()  # before it runs
        box.put([b"late"])
