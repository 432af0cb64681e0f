"""The audio scenario's report: sessions per core for every server, CPU per chunk at equal N, and every phase that
led there with what the load side cost."""

from __future__ import annotations

import argparse
from typing import Any

from bench.audio_client import CHUNK_MS
from bench.common import Context, failed_rows, fmt_ratio, mib, peer_notes, ratio
from bench.procs import LOAD_SATURATED
from bench.report import ScenarioResult, Table, fmt

_FOREIGN_LOAD = 5.0  # % of the server's CPU used by anything else: the machine is not idle


def _derive(label: str, s: dict[str, Any], servers: dict[str, dict[str, Any]]) -> None:
    """Figures of a server's best phase, and its ratios to the bare forwarder and to LiteLLM."""
    p = s["at_max"]
    n = s["max_sessions"]
    if p is not None:
        # From the fresh process's start, not from the phase's own start: earlier phases leave memory behind that
        # the next one reuses, which would hide what sessions cost.
        streaming = p["server_rss_kib"]["streaming"]
        s["kib_per_active_session"] = (streaming - s["rss_start_kib"]) / n if streaming is not None and n else None
        cpu = p["server_cpu_percent"]
        s["sessions_at_full_core"] = n / (cpu / 100) if cpu else None
    else:
        s["kib_per_active_session"] = s["sessions_at_full_core"] = None
    if s["kind"] == "relay":
        bare = servers.get(label.replace("relay", "bare", 1), {})
        s["vs_bare"] = ratio(n, bare.get("max_sessions")) if "failed" not in bare else None
        s["vs_bare_cpu"] = ratio(s["sessions_at_full_core"], bare.get("sessions_at_full_core"))
        litellm = servers.get("litellm", {})
        s["vs_litellm"] = ratio(n, litellm.get("max_sessions")) if "failed" not in litellm else None


def result(
    args: argparse.Namespace, servers: dict[str, dict[str, Any]], floors: dict[int, dict[str, Any]], ctx: Context
) -> ScenarioResult:
    ok = {label: s for label, s in servers.items() if "failed" not in s}
    for label in sorted(ok, key=lambda lb: ok[lb]["kind"] != "bare"):  # bare first: the relay rows use it
        _derive(label, ok[label], servers)
    summary = Table(
        f"Sessions per server core (p99 added < {args.added_p99_ms:g} ms, nothing dropped)",
        ["server", "**sessions**", "limited by", "first failure", "p99 ms", "direct p99 ms", "added p99 ms",
         "server CPU %", "µs/chunk", "sessions at 100 % CPU", "KiB per active session", "vs bare", "vs LiteLLM",
         "load CPU busy %", "load µs/chunk"],
    )
    for label, s in ok.items():
        p = s["at_max"]
        fail = s["first_failure"]
        floor = floors.get(s["max_sessions"]) if p is not None else None
        summary.rows.append([
            label, f"**{s['max_sessions']}**", s["limited_by"],
            f"{fail['sessions']}: {fail['reason']}" if fail else "—",
            fmt(p["latency_ms"]["p99"]) if p else "n/a", fmt(floor["latency_ms"]["p99"]) if floor else "n/a",
            fmt(p.get("added_p99_ms")) if p else "n/a", fmt(p["server_cpu_percent"], 0) if p else "n/a",
            fmt(p["server_cpu_us_per_chunk"], 0) if p else "n/a", fmt(s["sessions_at_full_core"], 0),
            fmt(s["kib_per_active_session"], 0),
            fmt_ratio(s.get("vs_bare")) if s["kind"] == "relay" else "—",
            fmt_ratio(s.get("vs_litellm")) if s["kind"] == "relay" else "—",
            fmt(p["load_cores_busy_percent"], 0) if p else "n/a", fmt(p["load_cpu_us_per_chunk"], 0) if p else "n/a",
        ])
    summary.rows += failed_rows(servers, len(summary.columns))
    phases = Table(
        "Every phase",
        ["path", "sessions", "p50 ms", "p99 ms", "max ms", "direct p99 ms", "sent", "dropped", "server CPU %",
         "µs/chunk", "server RSS MiB", "upstream CPU %", "generators CPU %", "load CPU busy %", "load µs/chunk",
         "send lag p99 ms", "verdict"],
    )
    rows = [("direct", p) for _, p in sorted(floors.items())]
    rows += [(label, p) for label, s in ok.items() for p in s["phases"]]
    for label, p in rows:
        floor = floors.get(p["sessions"]) if label != "direct" else None
        phases.rows.append([
            label, str(p["sessions"]), fmt(p["latency_ms"]["p50"]), fmt(p["latency_ms"]["p99"]),
            fmt(p["latency_ms"]["max"]), fmt(floor["latency_ms"]["p99"]) if floor else "—", str(p["sent"]),
            str(p["dropped"]), fmt(p["server_cpu_percent"], 0), fmt(p["server_cpu_us_per_chunk"], 0),
            mib(p["server_rss_kib"]["peak"]), fmt(p["upstream_cpu_percent"], 0), _sum(p["generator_cpu_percent"]),
            fmt(p["load_cores_busy_percent"], 0), fmt(p["load_cpu_us_per_chunk"], 0), fmt(p["send_lag_ms"]["p99"]),
            p.get("verdict", "floor" if label == "direct" else "—")
            + (" **(load side saturated)**" if p["load_limited"] else ""),
        ])
    equal = _equal_n(args, ok, floors)
    notes = _warnings(rows) + peer_notes(ctx, servers)
    notes += [
        f"A session streams 24 kHz pcm16 in {CHUNK_MS} ms chunks (960 bytes, 1,280 base64 characters) on a "
        f"fixed schedule for {args.seconds:g} s per phase, sessions spread evenly over the period, and the "
        "emulator echoes every chunk; latency is measured in the load generator from just before a chunk is "
        "written to the arrival of its echo. One warm-up chunk per session is echoed before the clock starts "
        "(the relay's upstream connect). Dropped = not echoed within "
        f"{args.grace:g} s of the last send. The upstream is the echo upstream (bench.echo_upstream), for the "
        "direct floor and every server alike.",
        "added p99 = the server's p99 - the direct floor's p99 at the same N (separate phases, not paired "
        "chunks). A server passes at N with nothing dropped, altered or refused and added p99 under the limit.",
        "Server CPU: /proc utime+stime over the streaming window; µs/chunk is per chunk round trip (client → "
        "server → upstream and back). Sessions at 100 % CPU = N / CPU share at the largest passing N: where "
        "the load side stops the search first, this says what the core itself would carry.",
        "KiB per active session = (server RSS while streaming at the largest passing N - its RSS right after it "
        "started) / N: everything the process grew by, so an upper bound.",
        "vs bare: relay sessions / bare forwarder sessions on the same transport (the bare forwarder copies "
        "frames between the same two sockets with no translation), the share of the core the translator leaves. "
        "vs LiteLLM: relay sessions / LiteLLM sessions.",
        "Load side: upstream CPU % is the echo upstream's own (/proc), generators CPU % the load generator "
        "processes' summed (their os.times over the streaming window and the wait for the last echoes); load "
        "µs/chunk = (upstream + generators CPU) per chunk round trip, to set beside the server's µs/chunk. Load CPU "
        f"busy is the other core(s) from /proc/stat (any process, and the kernel's packet work); at "
        f"{LOAD_SATURATED:.0f} % or more the phase is marked **(load side saturated)**: the clients and the "
        "upstream queued, and the phase says nothing about the server.",
    ]
    return ScenarioResult(
        name="audio",
        title="Audio streaming: sessions per core",
        description="Full-duplex real-time audio (20 ms chunks each way) per server core: the largest number of "
                    "sessions each server under test carries with nothing dropped and little added latency.",
        tables=[summary, equal, phases],
        notes=notes,
        data={"params": {k: getattr(args, k) for k in ("sessions", "seconds", "grace", "start", "max_sessions",
                                                        "search_seconds", "added_p99_ms", "per_generator",
                                                        "compare")},
              "servers": servers, "direct": {str(n): p for n, p in floors.items()}},
    )


def _sum(values: list[float | None]) -> str:
    known = [v for v in values if v is not None]
    return fmt(sum(known), 0) if known else "n/a"


def _at(phases: list[dict[str, Any]], n: int) -> dict[str, Any] | None:
    """The phase at exactly n sessions: the last passing one, else the last one."""
    at_n = [p for p in phases if p["sessions"] == n]
    passing = [p for p in at_n if p.get("verdict", "pass").endswith("pass")]
    return (passing or at_n or [None])[-1]


def _equal_n(args: argparse.Namespace, servers: dict[str, dict[str, Any]], floors: dict[int, dict[str, Any]]) -> Table:
    """CPU per chunk round trip of every server (and of the load side beside it) at the same session counts."""
    counts = sorted(set(args.sessions or args.compare or ()))
    table = Table("CPU per chunk round trip at equal N (µs; server / load side)",
                  ["path", *(f"{n} sessions" for n in counts)])
    paths = [("direct (load side only)", list(floors.values()))]
    paths += [(label, s["phases"]) for label, s in servers.items()]
    for label, phases in paths:
        cells = []
        for n in counts:
            p = _at(phases, n)
            if p is None:
                cells.append("—")
                continue
            server = "" if label.startswith("direct") else f"{fmt(p['server_cpu_us_per_chunk'], 0)} / "
            failed = "" if p.get("verdict", "pass").endswith("pass") else " (failed)"
            saturated = " (load saturated)" if p["load_limited"] else ""
            cells.append(f"{server}{fmt(p['load_cpu_us_per_chunk'], 0)}{failed}{saturated}")
        table.rows.append([label, *cells])
    return table


def _warnings(rows: list[tuple[str, dict[str, Any]]]) -> list[str]:
    out = []
    for label, p in rows:
        where = f"{label} at {p['sessions']} sessions"
        if p["error_count"]:
            out.append(f"{where}: {p['error_count']} client errors, e.g. {'; '.join(p['errors'][:2])}")
        other = p["server_core_other_percent"]
        if label != "direct" and other is not None and other > _FOREIGN_LOAD:
            out.append(f"WARNING {where}: other processes used {other:.0f} % of the server's CPU: the machine "
                       "was not idle")
    return out
