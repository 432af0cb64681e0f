"""Scenario "text": text turn latency on one session, and turn throughput of parallel sessions.

Per path (direct to the emulator in Gemini Live: the floor; the relay per transport in OpenAI GA; LiteLLM
with --peer litellm): one session takes TURNS text turns one after the other (`conversation.item.create` +
`response.create`, or `clientContent` with `turnComplete`), timed from the send to the first text delta and
to `response.done` / `turnComplete`; then PARALLEL sessions take PARALLEL_TURNS turns each, all at once,
for ROUNDS rounds, counted as turns per second.
"""

from __future__ import annotations

import argparse
import statistics
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
from bench.turns_client import TurnsJob, turns_job

NAME = "text"
HELP = "text turns: send → first delta / response.done on one session, and turns/s of parallel sessions"
# Nine words: the emulator answers "Echo: <text>" in 3-word deltas, so each reply is 4 deltas.
TEXT = "please tell me a short story about the sea"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--turns", type=int, default=200, help="sequential turns on one session (default: 200)")
    parser.add_argument("--parallel", type=int, default=20, help="parallel sessions (default: 20)")
    parser.add_argument("--parallel-turns", type=int, default=10, help="turns per parallel session (default: 10)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="times the parallel turns are repeated; the median round is reported (default: 5)")


def _sequential(ctx: Context, s: Subject, args: argparse.Namespace) -> dict[str, Any]:
    job = TurnsJob(s.endpoint, "text", TEXT, sessions=1, turns=args.turns)
    timed = run_jobs(ctx, turns_job, [job], s.server)
    result = timed.results[0]
    record = {k: np.frombuffer(v, dtype=np.float64 if k in ("first_delta", "done") else np.int64)
              for k, v in result["record"].items()}
    turns = len(record["done"])
    return {
        "turns": turns,
        "first_delta_ms": percentiles(record["first_delta"]),
        "done_ms": percentiles(record["done"]),
        "deltas_per_turn": float(record["deltas"].mean()) if turns else None,
        "server_cpu_us_per_turn": timed.server_cpu_s / turns * 1e6 if timed.server_cpu_s is not None and turns
        else None,
        "errors": result["errors"],
        "error_count": result["error_count"],
    }


def _parallel(ctx: Context, s: Subject, args: argparse.Namespace) -> dict[str, Any]:
    job = TurnsJob(s.endpoint, "text", TEXT, sessions=args.parallel, turns=args.parallel_turns, rounds=args.rounds)
    timed = run_jobs(ctx, turns_job, [job], s.server)
    result = timed.results[0]
    rates = [r["turns"] / r["wall_s"] for r in result["rounds"] if r["wall_s"] > 0]
    turns = sum(r["turns"] for r in result["rounds"])
    return {
        "sessions": args.parallel,
        "turns_per_session": args.parallel_turns,
        "rounds": len(rates),
        "turns_per_s": statistics.median(rates) if rates else None,
        "turns_per_s_min": min(rates, default=None),
        "turns_per_s_max": max(rates, default=None),
        "server_cpu_percent": timed.server_cpu_percent,
        "server_cpu_us_per_turn": timed.server_cpu_s / turns * 1e6 if timed.server_cpu_s is not None and turns
        else None,
        "client_cpu_percent": 100 * sum(r["cpu_s"] for r in result["rounds"]) / max(1e-9, sum(
            r["wall_s"] for r in result["rounds"])),
        "errors": result["errors"],
        "error_count": result["error_count"],
    }


def run(args: argparse.Namespace, ctx: Context) -> ScenarioResult:
    if min(args.turns, args.parallel, args.parallel_turns, args.rounds) < 1:
        raise ValueError("--turns, --parallel, --parallel-turns and --rounds must be positive")

    def measure(s: Subject) -> dict[str, Any]:
        ctx.progress(f"text: {s.label}: {args.turns} sequential turns, then {args.parallel} sessions x "
                     f"{args.parallel_turns} turns x {args.rounds} rounds")
        return {"sequential": _sequential(ctx, s, args), "parallel": _parallel(ctx, s, args)}

    return _result(args, each_path(ctx, NAME, measure), ctx)


def _result(args: argparse.Namespace, paths: dict[str, dict[str, Any]], ctx: Context) -> ScenarioResult:
    direct = paths["direct"]
    litellm = peer_result(paths)
    seq = Table(
        f"One session, {args.turns} sequential turns: send → first delta / → response.done (ms)",
        ["path", "first delta p50", "first delta p99", "done p50", "done p99", "done max", "deltas/turn",
         "server CPU µs/turn", "done p50 vs direct", "done p99 vs direct", "done p50 vs LiteLLM"],
    )
    par = Table(
        f"{args.parallel} parallel sessions x {args.parallel_turns} turns (median of {args.rounds} rounds)",
        ["path", "turns/s", "rounds min-max", "server CPU %", "server CPU µs/turn", "load gen CPU %", "vs LiteLLM"],
    )
    notes = []
    for label, p in paths.items():
        if "failed" in p:
            continue
        s, q = p["sequential"], p["parallel"]
        p["done_p50_vs_direct"] = ratio(s["done_ms"]["p50"], direct["sequential"]["done_ms"]["p50"])
        p["done_p99_vs_direct"] = ratio(s["done_ms"]["p99"], direct["sequential"]["done_ms"]["p99"])
        p["done_p50_vs_litellm"] = ratio(s["done_ms"]["p50"], litellm["sequential"]["done_ms"]["p50"]) \
            if litellm else None
        p["turns_per_s_vs_litellm"] = ratio(q["turns_per_s"], litellm["parallel"]["turns_per_s"]) if litellm else None
        own = label == "direct"
        seq.rows.append([
            label, fmt(s["first_delta_ms"]["p50"]), fmt(s["first_delta_ms"]["p99"]), fmt(s["done_ms"]["p50"]),
            fmt(s["done_ms"]["p99"]), fmt(s["done_ms"]["max"]), fmt(s["deltas_per_turn"], 1),
            "—" if own else fmt(s["server_cpu_us_per_turn"], 0),
            "—" if own else fmt_ratio(p["done_p50_vs_direct"]), "—" if own else fmt_ratio(p["done_p99_vs_direct"]),
            "—" if own or label == "litellm" else fmt_ratio(p["done_p50_vs_litellm"]),
        ])
        par.rows.append([
            label, fmt(q["turns_per_s"], 0), f"{fmt(q['turns_per_s_min'], 0)}-{fmt(q['turns_per_s_max'], 0)}",
            "—" if own else fmt(q["server_cpu_percent"], 0), "—" if own else fmt(q["server_cpu_us_per_turn"], 0),
            fmt(q["client_cpu_percent"], 0),
            "—" if own or label == "litellm" else fmt_ratio(p["turns_per_s_vs_litellm"]),
        ])
        for part in (s, q):
            if part["error_count"]:
                errors = "; ".join(part["errors"][:2])
                notes.append(f"WARNING {label}: {part['error_count']} failed turns, e.g. {errors}")
    seq.rows += failed_rows(paths, len(seq.columns))
    par.rows += failed_rows(paths, len(par.columns))
    notes += peer_notes(ctx, paths)
    notes += [
        f"User text: \"{TEXT}\" ({len(TEXT.split())} words); the emulator answers \"Echo: <text>\" in 3-word text "
        "deltas. Each session first takes one unmeasured turn: the relay opens its upstream with the first "
        "response, and that connect is not a turn's cost.",
        "Times are measured in the load generator from just before the turn's first message is written to the "
        "arrival of the first content delta and of `response.done` (`turnComplete` on the direct path).",
        "Server CPU: /proc utime+stime of the server process over the whole measured window, per turn.",
        "LiteLLM is spoken to in GA, like the relay: its GA events carry the names the client reads, though its "
        "session objects and content parts fail the openai SDK's GA event schemas.",
    ]
    return ScenarioResult(
        name=NAME,
        title="Text turns",
        description="Text turn latency on one session and turn throughput of parallel sessions, through each server "
                    "under test against the same client speaking Gemini Live straight to the emulator (direct).",
        tables=[seq, par],
        notes=notes,
        data={"params": {"turns": args.turns, "parallel": args.parallel, "parallel_turns": args.parallel_turns,
                         "rounds": args.rounds, "text": TEXT}, "paths": paths},
    )
