"""Scenario "connect": handshakes per second up to `session.created`, and connect → `session.created` latency.

Per path, for SECONDS each: one client connecting again and again (sequential), then CONCURRENCY clients
doing the same at once. A connection counts when the server's first event arrived (`session.created`;
Gemini Live has none, so direct is timed to the 101 and to `setupComplete`, one round trip later). The
client then sends a close frame and a FIN and moves on, so the server's teardown overlaps the next connect.
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
from bench.conn_client import ConnectJob, connect_job
from bench.procs import LOAD_SATURATED
from bench.report import ScenarioResult, Table, fmt, percentiles

NAME = "connect"
HELP = "handshakes/s up to session.created (sequential and concurrent), connect → session.created p50/p99"
UPSTREAM = "echo"  # the floor's setup round trip should not wait on the full emulator


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=4.0, help="connecting time per mode (default: 4)")
    parser.add_argument("--concurrency", type=int, default=20, help="clients at once in the second mode (default: 20)")


def _mode(ctx: Context, s: Subject, concurrency: int, seconds: float) -> dict[str, Any]:
    timed = run_jobs(ctx, connect_job, [ConnectJob(s.endpoint, concurrency, seconds)], s.server,
                     timeout=seconds + 120)
    result = timed.results[0]
    upgrade = np.frombuffer(result["upgrade"], dtype=np.float64)
    ready = np.frombuffer(result["ready"], dtype=np.float64)
    count = len(ready)
    return {
        "concurrency": concurrency,
        "connections": count,
        "per_s": count / result["wall_s"] if result["wall_s"] > 0 else None,
        "upgrade_ms": percentiles(upgrade),
        "ready_ms": percentiles(ready),
        "server_cpu_percent": timed.server_cpu_percent,
        "server_cpu_us_per_connection": timed.server_cpu_s / count * 1e6
        if timed.server_cpu_s is not None and count else None,
        "client_cpu_percent": 100 * result["cpu_s"] / result["wall_s"] if result["wall_s"] > 0 else None,
        "upstream_cpu_percent": timed.upstream_cpu_percent,
        "load_cores_busy_percent": timed.load_cores_busy_percent,
        "load_limited": timed.load_cores_busy_percent is not None and timed.load_cores_busy_percent >= LOAD_SATURATED,
        "errors": result["errors"],
        "error_count": result["error_count"],
    }


def run(args: argparse.Namespace, ctx: Context) -> ScenarioResult:
    if args.seconds <= 0 or args.concurrency < 1:
        raise ValueError("--seconds and --concurrency must be positive")

    def measure(s: Subject) -> dict[str, Any]:
        ctx.progress(f"connect: {s.label}: sequential, then {args.concurrency} at once, {args.seconds:g} s each")
        return {"sequential": _mode(ctx, s, 1, args.seconds),
                "concurrent": _mode(ctx, s, args.concurrency, args.seconds)}

    return _result(args, each_path(ctx, NAME, measure), ctx)


def _result(args: argparse.Namespace, paths: dict[str, dict[str, Any]], ctx: Context) -> ScenarioResult:
    litellm = peer_result(paths)
    table = Table(
        "Handshakes (TCP connect → 101 → first event), per second and latency (ms)",
        ["path", "mode", "handshakes/s", "→ 101 p50", "→ ready p50", "→ ready p99", "server CPU %",
         "server CPU µs/handshake", "load gen CPU %", "upstream CPU %", "load CPU busy %", "errors",
         "handshakes/s vs LiteLLM"],
    )
    notes: list[str] = []
    for label, p in paths.items():
        if "failed" in p:
            continue
        own = label == "direct"
        for mode in ("sequential", "concurrent"):
            m = p[mode]
            if litellm is not None and label not in ("litellm", "direct"):
                m["per_s_vs_litellm"] = ratio(m["per_s"], litellm[mode]["per_s"])
            table.rows.append([
                label, "sequential" if mode == "sequential" else f"{m['concurrency']} at once",
                fmt(m["per_s"], 0), fmt(m["upgrade_ms"]["p50"]), fmt(m["ready_ms"]["p50"]), fmt(m["ready_ms"]["p99"]),
                "—" if own else fmt(m["server_cpu_percent"], 0),
                "—" if own else fmt(m["server_cpu_us_per_connection"], 0), fmt(m["client_cpu_percent"], 0),
                fmt(m["upstream_cpu_percent"], 0),
                fmt(m["load_cores_busy_percent"], 0) + (" **(saturated)**" if m["load_limited"] else ""),
                str(m["error_count"]), fmt_ratio(m.get("per_s_vs_litellm")),
            ])
            if m["error_count"]:
                notes.append(f"WARNING {label} {mode}: {m['error_count']} failed connections, e.g. "
                             f"{'; '.join(m['errors'][:2])}")
    table.rows += failed_rows(paths, len(table.columns))
    notes += peer_notes(ctx, paths)
    notes += [
        "ready = the first server event: `session.created` through the relay and LiteLLM; direct, Gemini Live "
        "has none, so ready there is `setupComplete` for a `setup` sent right after the 101 (one round trip "
        "more). Latencies are from the start of the TCP connect, measured in the load generator; the sequential "
        "mode's p50 is the one compared with the 1 ms target.",
        "Each client sends a close frame and closes its socket without waiting for the answer, so the server's "
        "teardown of one connection overlaps the next handshake and is part of its CPU per handshake.",
        "The upstream is the echo upstream (bench.echo_upstream); the relay connects upstream lazily, at the first "
        "audio, so only the direct path reaches it here. Load side: the load generator's own CPU, the upstream's, "
        f"and how busy the load CPU(s) were (/proc/stat, anything running); at {LOAD_SATURATED:.0f} % or more "
        "the row is marked **(saturated)**: the handshake rate is then the load side's, not the server's.",
    ]
    return ScenarioResult(
        name=NAME,
        title="Connect",
        description="Connection set-up: handshakes per second up to the first event, one at a time and "
                    f"{args.concurrency} at once, and the latency from the TCP connect to `session.created`.",
        tables=[table],
        notes=notes,
        data={"params": {"seconds": args.seconds, "concurrency": args.concurrency}, "paths": paths},
    )
