"""Load generator processes: a pool of spawned workers, each running one asyncio job at a time.

Scenarios hand the pool a module-level `async def job(params, ready) -> dict` and one `params` per
worker. A job connects whatever it needs, then `await ready()`: that tells the coordinator it is set
and returns the common start time (`time.monotonic()`, the same CLOCK_MONOTONIC in every process on
Linux), so every worker starts its measured window together and connect costs stay out of it.

Jobs run on uvloop when it is installed (`bench.loops`); the clients are `rawws`'s minimal protocol, so the load
side costs a fraction of what the server under test spends per message, and each phase reports how busy the load
CPU was.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any

from bench import loops

Ready = Callable[[], Awaitable[float]]
Job = Callable[[Any, Ready], Awaitable[dict[str, Any]]]

_READY_TIMEOUT = 60.0


def _worker(conn: Connection, cpus: frozenset[int] | None) -> None:
    """Worker main loop: run jobs until told to stop (None)."""
    if cpus is not None:
        try:
            os.sched_setaffinity(0, cpus)
        except OSError:
            pass  # the coordinator reports pinning; a worker that cannot pin still produces load
    while True:
        message = conn.recv()
        if message is None:
            return
        job, params = message
        try:
            with asyncio.Runner(loop_factory=loops.factory()) as runner:
                result = runner.run(_run(job, params, conn))
            conn.send(("done", result))
        except _Stop:
            return
        except BaseException:
            conn.send(("error", traceback.format_exc()))


class _Stop(Exception):
    """The coordinator gave up on this phase (another worker failed) and closes the pool."""


async def _run(job: Job, params: Any, conn: Connection) -> dict[str, Any]:
    loop = asyncio.get_running_loop()

    async def ready() -> float:
        conn.send(("ready", None))
        # A blocking recv in a thread keeps the event loop (and the sessions' readers) running meanwhile.
        message = await loop.run_in_executor(None, conn.recv)
        if message is None:
            raise _Stop
        kind, start_at = message
        assert kind == "go", kind
        return float(start_at)

    return await job(params, ready)


class GeneratorPool:
    """`count` spawned worker processes, reused across the phases of a run; a context manager."""

    def __init__(self, count: int, cpus: frozenset[int] | None) -> None:
        # spawn, not fork: a clean interpreter with no copy of the coordinator's state or threads.
        ctx = multiprocessing.get_context("spawn")
        self._conns: list[Connection] = []
        self._procs: list[multiprocessing.process.BaseProcess] = []
        for _ in range(count):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(child, cpus), daemon=True)
            proc.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(proc)

    @property
    def size(self) -> int:
        return len(self._procs)

    def __enter__(self) -> GeneratorPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def run(
        self,
        job: Job,
        params: Sequence[Any],
        *,
        lead: float = 0.2,
        on_start: Callable[[float], None] | None = None,
        poll: Callable[[], None] | None = None,
        timeout: float = 600.0,
    ) -> list[dict[str, Any]]:
        """Run `job` on the first len(params) workers; returns their results in order.

        `on_start(start_at)` runs once every worker is ready, just before the go signal; `poll()` runs
        about every 0.1 s while the jobs run (resource sampling).
        """
        if len(params) > self.size:
            raise ValueError(f"{len(params)} jobs for {self.size} workers")
        conns = self._conns[: len(params)]
        for conn, p in zip(conns, params, strict=True):
            conn.send((job, p))
        self._expect(conns, "ready", _READY_TIMEOUT, poll)
        start_at = time.monotonic() + lead
        if on_start is not None:
            on_start(start_at)
        for conn in conns:
            conn.send(("go", start_at))
        results = self._expect(conns, "done", timeout, poll)
        return [results[conn] for conn in conns]

    def _expect(
        self, conns: list[Connection], kind: str, timeout: float, poll: Callable[[], None] | None
    ) -> dict[Connection, Any]:
        deadline = time.monotonic() + timeout
        got: dict[Connection, Any] = {}
        while len(got) < len(conns):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"load generators: {len(conns) - len(got)} not {kind} after {timeout:.0f} s")
            for conn in wait([c for c in conns if c not in got], min(left, 0.1)):
                try:
                    what, value = conn.recv()
                except EOFError:
                    raise RuntimeError("a load generator process died") from None
                if what == "error":
                    raise RuntimeError(f"load generator failed:\n{value}")
                if what != kind:
                    raise RuntimeError(f"load generator said {what!r}, expected {kind!r}")
                got[conn] = value
            if poll is not None:
                poll()
        return got

    def close(self) -> None:
        for conn in self._conns:
            try:
                conn.send(None)
            except OSError:
                pass
        for proc in self._procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join()
        for conn in self._conns:
            conn.close()
