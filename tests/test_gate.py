"""`relay.gate.Gate`: strict FIFO hand-off, no scheduler pass when free, cancellation-safe waiters."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from relay.gate import Gate


async def test_free_gate_is_taken_without_letting_other_tasks_run() -> None:
    gate = Gate()
    ran = []

    async def other() -> None:
        ran.append("other")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other)
        async with gate:
            assert gate.locked() and ran == []
        assert not gate.locked()


async def test_waiters_get_the_gate_in_arrival_order() -> None:
    gate = Gate()
    order: list[int] = []

    async def worker(n: int) -> None:
        async with gate:
            order.append(n)
            await trio.sleep(0)  # hold it across a scheduler pass

    async with trio.open_nursery() as nursery:
        await gate.acquire()
        for n in range(5):
            nursery.start_soon(worker, n)
            await trio.testing.wait_all_tasks_blocked()
        gate.release()
    assert order == [0, 1, 2, 3, 4]
    assert not gate.locked()


async def test_a_cancelled_waiter_leaves_the_queue_and_the_gate_passes_on() -> None:
    gate = Gate()
    got: list[str] = []
    doomed = trio.CancelScope()

    async def waiter(name: str, scope: trio.CancelScope | None = None) -> None:
        with scope or trio.CancelScope():
            async with gate:
                got.append(name)

    await gate.acquire()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter, "doomed", doomed)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(waiter, "next")
        await trio.testing.wait_all_tasks_blocked()
        doomed.cancel()
        await trio.testing.wait_all_tasks_blocked()
        gate.release()
    assert got == ["next"] and not gate.locked()


async def test_acquire_is_a_cancellation_point_even_when_free() -> None:
    gate = Gate()
    with trio.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(trio.Cancelled):
            await gate.acquire()
    assert not gate.locked()
