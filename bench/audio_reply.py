"""Scenario "audio-reply": a long spoken reply, timed from the user's send to its end.

The emulator runs with `--reply-audio-chunks 200`: every AUDIO reply is 200 chunks of 100 ms of 24 kHz
pcm16 (4,800 bytes, 6,400 base64 characters each), with its transcript spread over them. One session per
path, configured for audio output, takes TURNS text turns one after the other; each is timed from the send
to the first audio delta and to `response.done` (`turnComplete` direct). Through the relay each chunk also
becomes an audio delta of the same size, and each transcript piece a transcript delta.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from bench.common import (
    Context,
    Subject,
    each_path,
    failed_rows,
    fmt_ratio,
    peer_notes,
    peer_result,
    ratio,
    run_jobs,
)
from bench.report import ScenarioResult, Table, fmt, percentiles
from bench.servers import REPLY_AUDIO_CHUNKS
from bench.turns_client import TurnsJob, turns_job

NAME = "audio-reply"
HELP = f"a spoken reply of {REPLY_AUDIO_CHUNKS} x 4,800-byte pcm16 chunks: send → response.done, relay vs direct"
TEXT = "say something long"
CHUNK_BYTES = 4800


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--turns", type=int, default=30, help="sequential audio replies on one session (default: 30)")


def run(args: argparse.Namespace, ctx: Context) -> ScenarioResult:
    if args.turns < 1:
        raise ValueError("--turns must be positive")

    def measure(s: Subject) -> dict[str, Any]:
        ctx.progress(f"audio-reply: {s.label}: {args.turns} replies of {REPLY_AUDIO_CHUNKS} chunks")
        timed = run_jobs(ctx, turns_job, [TurnsJob(s.endpoint, "audio", TEXT, sessions=1, turns=args.turns)],
                         s.server)
        result = timed.results[0]
        record = {k: np.frombuffer(v, dtype=np.float64 if k in ("first_delta", "done") else np.int64)
                  for k, v in result["record"].items()}
        turns = len(record["done"])
        return {
            "turns": turns,
            "first_delta_ms": percentiles(record["first_delta"]),
            "done_ms": percentiles(record["done"]),
            "audio_deltas_per_turn": float(record["deltas"].mean()) if turns else None,
            "audio_bytes_per_turn": float(record["audio_bytes"].mean()) if turns else None,
            "server_cpu_us_per_turn": timed.server_cpu_s / turns * 1e6
            if timed.server_cpu_s is not None and turns else None,
            "errors": result["errors"],
            "error_count": result["error_count"],
        }

    return _result(args, each_path(ctx, NAME, measure), ctx)


def _result(args: argparse.Namespace, paths: dict[str, dict[str, Any]], ctx: Context) -> ScenarioResult:
    direct = paths["direct"]
    litellm = peer_result(paths)
    table = Table(
        f"{args.turns} sequential replies of {REPLY_AUDIO_CHUNKS} x {CHUNK_BYTES} B: send → first audio / → done (ms)",
        ["path", "first audio p50", "done p50", "done p99", "done max", "audio deltas/turn", "audio KB/turn",
         "server CPU ms/turn", "done p50 vs direct", "done p50 vs LiteLLM"],
    )
    notes: list[str] = []
    expected = REPLY_AUDIO_CHUNKS * CHUNK_BYTES
    for label, p in paths.items():
        if "failed" in p:
            continue
        own = label == "direct"
        p["done_p50_vs_direct"] = ratio(p["done_ms"]["p50"], direct["done_ms"]["p50"])
        p["done_p50_vs_litellm"] = ratio(p["done_ms"]["p50"], litellm["done_ms"]["p50"]) if litellm else None
        us = p["server_cpu_us_per_turn"]
        table.rows.append([
            label, fmt(p["first_delta_ms"]["p50"]), fmt(p["done_ms"]["p50"]), fmt(p["done_ms"]["p99"]),
            fmt(p["done_ms"]["max"]), fmt(p["audio_deltas_per_turn"], 0),
            fmt(p["audio_bytes_per_turn"] / 1000 if p["audio_bytes_per_turn"] is not None else None, 0),
            "—" if own else fmt(us / 1000 if us is not None else None, 1),
            "—" if own else fmt_ratio(p["done_p50_vs_direct"]),
            "—" if own or label == "litellm" else fmt_ratio(p["done_p50_vs_litellm"]),
        ])
        if p["error_count"]:
            notes.append(f"WARNING {label}: {p['error_count']} failed replies, e.g. {'; '.join(p['errors'][:2])}")
        if p["audio_bytes_per_turn"] is not None and round(p["audio_bytes_per_turn"]) != expected:
            notes.append(f"WARNING {label}: {p['audio_bytes_per_turn']:.0f} audio bytes per reply, not {expected}")
    table.rows += failed_rows(paths, len(table.columns))
    notes += peer_notes(ctx, paths)
    notes += [
        f"User text \"{TEXT}\"; the emulator answers every audio reply with exactly {REPLY_AUDIO_CHUNKS} chunks "
        f"(`--reply-audio-chunks`, {expected:,} bytes). The direct client asks for an output transcript, as the "
        "relay always does, so the emulator does the same work on both paths; LiteLLM does not ask for one, so "
        "it gets no transcript pieces.",
        "One unmeasured reply first (the relay's upstream connect). Times are from just before the turn is "
        "written to the first audio delta and to `response.done` / `turnComplete`, measured in the load "
        "generator, which parses every message of the reply on every path.",
    ]
    return ScenarioResult(
        name=NAME,
        title="Audio reply",
        description=f"A spoken reply of {REPLY_AUDIO_CHUNKS} x {CHUNK_BYTES}-byte pcm16 chunks to a text turn, "
                    "from the send to the end of the response, through each server under test and direct.",
        tables=[table],
        notes=notes,
        data={"params": {"turns": args.turns, "chunks": REPLY_AUDIO_CHUNKS, "chunk_bytes": CHUNK_BYTES},
              "paths": paths},
    )
