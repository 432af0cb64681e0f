"""The turn-taking client of the `text` and `audio-reply` scenarios, run inside a load generator.

Each session sends a user text turn, reads the reply to its end, and only then sends the next turn. Per
turn it records the time from just before the turn's first message is written to the first content delta
and to the end of the reply (`response.done` / `turnComplete`), the number of deltas and the audio bytes.
"""

from __future__ import annotations

import asyncio
import os
import time
from array import array
from typing import Any

import attrs

from bench import rawws
from bench.dialects import Endpoint, Modality, configure, open_session, reply_event, turn
from bench.loadgen import Ready

_TURN_TIMEOUT = 30.0
_OPEN_CONCURRENCY = 20


@attrs.frozen
class TurnsJob:
    endpoint: Endpoint
    modality: Modality
    text: str
    sessions: int  # concurrent sessions, each taking turns one after the other
    turns: int  # measured turns per session and round
    rounds: int = 1  # the measured turns are run this many times back to back, each round timed on its own
    warmup: int = 1  # unmeasured turns first: the relay connects upstream with the first one


class _Failed(Exception):
    pass


async def _take_turn(client: rawws.Client, job: TurnsJob, record: dict[str, array] | None) -> None:
    protocol = job.endpoint.protocol
    messages = turn(protocol, job.text)
    now = time.monotonic
    first = 0.0
    deltas = audio = 0
    sent = now()
    for message in messages:
        client.send(message)
    async with asyncio.timeout(_TURN_TIMEOUT):
        while True:
            event = reply_event(protocol, await client.recv())
            if event.error is not None:
                raise _Failed(f"error event: {event.error}")
            if event.delta:
                deltas += 1
                audio += event.audio_bytes
                if not first:
                    first = now()
            if event.done:
                break
    done = now()
    if record is not None:
        record["first_delta"].append(first - sent if first else float("nan"))
        record["done"].append(done - sent)
        record["deltas"].append(deltas)
        record["audio_bytes"].append(audio)


async def _session_turns(client: rawws.Client, job: TurnsJob, record: dict[str, array], errors: list[str]) -> int:
    done = 0
    try:
        for _ in range(job.turns):
            await _take_turn(client, job, record)
            done += 1
    except (_Failed, rawws.Closed, TimeoutError) as exc:
        errors.append(f"{job.endpoint.label}: turn {done + 1}: {type(exc).__name__}: {exc}")
    return done


async def turns_job(job: TurnsJob, ready: Ready) -> dict[str, Any]:
    """Open the sessions, take the warm-up turns, then the measured rounds on the common start signal."""
    gate = asyncio.Semaphore(_OPEN_CONCURRENCY)
    config = configure(job.endpoint.protocol, job.modality)

    async def opened() -> rawws.Client:
        async with gate:
            client, _ = await open_session(job.endpoint, config)
            for _ in range(job.warmup):
                await _take_turn(client, job, None)
            return client

    clients = await asyncio.gather(*(opened() for _ in range(job.sessions)))
    record: dict[str, array] = {"first_delta": array("d"), "done": array("d"), "deltas": array("q"),
                                "audio_bytes": array("q")}
    errors: list[str] = []
    rounds: list[dict[str, float]] = []
    try:
        start_at = await ready()
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        for _ in range(job.rounds):
            cpu0, wall0 = os.times(), time.monotonic()
            counts = await asyncio.gather(*(_session_turns(c, job, record, errors) for c in clients))
            cpu1, wall1 = os.times(), time.monotonic()
            rounds.append({"turns": float(sum(counts)), "wall_s": wall1 - wall0,
                           "cpu_s": (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)})
            if errors:
                break
    finally:
        for client in clients:
            client.close()
    return {"record": {k: v.tobytes() for k, v in record.items()}, "rounds": rounds, "errors": errors[:5],
            "error_count": len(errors)}
