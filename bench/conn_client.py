"""The connecting clients of the `connect` and `idle` scenarios, run inside a load generator.

A session is ready when the server's first event arrived: `session.created` on OpenAI paths; on Gemini
paths, which have no such event, `setupComplete` in answer to a `setup` sent right after the upgrade.
"""

from __future__ import annotations

import asyncio
import os
import time
from array import array
from typing import Any

import attrs
import orjson

from bench import rawws
from bench.dialects import Endpoint, configure, open_session
from bench.loadgen import Ready
from bench.procs import raise_nofile

_TIMEOUT = 30.0


@attrs.frozen
class ConnectJob:
    endpoint: Endpoint
    concurrency: int  # connections in flight at once; each worker connects, waits for ready, closes, repeats
    seconds: float


async def _handshake(endpoint: Endpoint, setup: bytes) -> tuple[float, float]:
    """One connection to ready and closed; (seconds to the 101, seconds to ready), both from the TCP connect."""
    client = await rawws.connect(endpoint.url, dict(endpoint.headers), timeout=_TIMEOUT)
    upgraded = time.monotonic() - client.connected_at
    try:
        async with asyncio.timeout(_TIMEOUT):
            if endpoint.protocol == "openai":
                first = orjson.loads(await client.recv())
                if first.get("type") != "session.created":
                    raise RuntimeError(f"first event {first.get('type')!r}")
            else:
                client.send(setup)
                if "setupComplete" not in orjson.loads(await client.recv()):
                    raise RuntimeError("no setupComplete")
        return upgraded, time.monotonic() - client.connected_at
    finally:
        # A close frame and a FIN without waiting for the answer: the server's teardown runs while the next
        # connection is made, as with a client that moves on.
        client.close()


async def connect_job(job: ConnectJob, ready: Ready) -> dict[str, Any]:
    setup = configure("gemini", "text")
    await _handshake(job.endpoint, setup)  # warm: the first connection pays for imports and caches
    start_at = await ready()
    await asyncio.sleep(max(0.0, start_at - time.monotonic()))
    deadline = start_at + job.seconds
    upgraded, ready_s = array("d"), array("d")
    errors: list[str] = []
    cpu0 = os.times()

    async def worker() -> None:
        while time.monotonic() < deadline:
            try:
                a, b = await _handshake(job.endpoint, setup)
            except (OSError, rawws.HandshakeError, rawws.Closed, RuntimeError, TimeoutError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(0.01)  # no hot loop against a server that refuses
                continue
            upgraded.append(a)
            ready_s.append(b)

    await asyncio.gather(*(worker() for _ in range(job.concurrency)))
    wall = time.monotonic() - start_at
    cpu1 = os.times()
    return {"upgrade": upgraded.tobytes(), "ready": ready_s.tobytes(), "wall_s": wall, "errors": errors[:5],
            "error_count": len(errors), "cpu_s": (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)}


@attrs.frozen
class IdleJob:
    endpoint: Endpoint
    count: int  # sessions this generator opens and holds
    concurrency: int  # opening handshakes in flight at once
    hold: float  # seconds the sessions stay open after the go signal


async def idle_job(job: IdleJob, ready: Ready) -> dict[str, Any]:
    """Open `count` sessions to ready, report ready, hold them, check they are all still open, close them."""
    soft, hard = raise_nofile()
    gate = asyncio.Semaphore(job.concurrency)
    setup = None if job.endpoint.protocol == "openai" else configure("gemini", "text")
    clients: list[rawws.Client] = []
    errors: list[str] = []
    t0 = time.monotonic()

    async def one() -> None:
        async with gate:
            try:
                client, _ = await open_session(job.endpoint, setup, timeout=60.0)
            except (OSError, rawws.HandshakeError, rawws.Closed, RuntimeError, TimeoutError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                return
            clients.append(client)

    await asyncio.gather(*(one() for _ in range(job.count)))
    open_s = time.monotonic() - t0
    try:
        start_at = await ready()
        await asyncio.sleep(max(0.0, start_at + job.hold - time.monotonic()))
        alive = sum(1 for c in clients if c.close_code is None)
    finally:
        for client in clients:
            client.close()
    return {"opened": len(clients), "alive_after_hold": alive, "open_s": open_s, "errors": errors[:5],
            "error_count": len(errors), "nofile": [soft, hard]}
