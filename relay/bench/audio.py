"""Scenario "audio": real-time audio streaming, per-chunk round trip through the relay against the direct floor.

For each session count N, two phases run back to back on the same processes: N sessions speaking
Gemini Live straight to the emulator (direct: the floor, what the client, the emulator and loopback
cost), then N sessions speaking OpenAI GA through the relay to the same emulator (relay). The
emulator echoes every audio chunk, so relay - direct is what the relay adds per chunk.
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

import numpy as np

from relay.bench.audio_client import CHUNK_MS, AudioJob, audio_job
from relay.bench.loadgen import GeneratorPool
from relay.bench.procs import CpuTimes, Pinning, ProcSample, Stack, busy_percent, cpu_percent, cpu_times, sample
from relay.bench.report import ScenarioResult, Table, fmt, percentiles

NAME = "audio"
HELP = "stream 20 ms pcm16 chunks in real time; per-chunk echo latency through the relay vs direct"
PATHS = ("direct", "relay")
_POLL_MARGIN = 0.1  # resource samples land within this of the streaming window's ends, inside it
_SETTLE = 0.5  # seconds for the relay to tear the previous phase's sessions down
_SATURATED_CPU = 80.0  # % of a core: a generator this busy may itself add latency
_FOREIGN_LOAD = 5.0  # % of the relay's CPU used by anything else: the machine is not idle
_SATURATED_LOAD = 90.0  # % busy of the emulator + generators CPU: their queueing shows in both paths


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 10, 25, 50], metavar="N",
                        help="session counts to sweep (default: 1 10 25 50)")
    parser.add_argument("--seconds", type=float, default=10.0, help="streaming time per phase (default: 10)")
    parser.add_argument("--grace", type=float, default=2.0,
                        help="seconds to wait for outstanding echoes after the last send (default: 2)")
    parser.add_argument("--per-generator", type=int, default=25, metavar="M",
                        help="sessions per load generator process (default: 25)")


def run(args: argparse.Namespace, *, key: str, pinning: Pinning) -> ScenarioResult:
    if any(n < 1 for n in args.sessions) or args.seconds <= 0 or args.per_generator < 1:
        raise ValueError("--sessions, --seconds and --per-generator must be positive")
    generators = math.ceil(max(args.sessions) / args.per_generator)
    phases: list[dict[str, Any]] = []
    with GeneratorPool(generators, pinning.others) as pool, Stack(key, pinning) as stack:
        assert stack.relay is not None and stack.relay_idle is not None
        for n in args.sessions:
            for path in PATHS:
                phases.append(_phase(pool, stack, path, n, args))
                time.sleep(_SETTLE)
                stack.check_alive()
        relay_idle_kib = stack.relay_idle.rss_kib
        notes = list(stack.notes)
    return _result(args, phases, relay_idle_kib, notes)


def _phase(pool: GeneratorPool, stack: Stack, path: str, n: int, args: argparse.Namespace) -> dict[str, Any]:
    assert stack.relay is not None and stack.emulator is not None
    gens = min(pool.size, math.ceil(n / args.per_generator))
    url = stack.relay_url if path == "relay" else stack.direct_url
    jobs = [
        AudioJob(path, url, stack.key, tuple(range(g, n, gens)), n, args.seconds, args.grace) for g in range(gens)
    ]
    pids = {"relay": stack.relay.pid, "emulator": stack.emulator.pid}
    before = sample(pids["relay"])
    window: dict[str, dict[str, ProcSample]] = {"start": {}, "end": {}}
    cpus: dict[str, CpuTimes] = {}
    marks = {"start": 0.0, "end": 0.0}
    peak_kib = [before.rss_kib]

    def on_start(start_at: float) -> None:
        marks["start"] = start_at + _POLL_MARGIN
        marks["end"] = start_at + args.seconds - _POLL_MARGIN

    def poll() -> None:
        # Sampled from the coordinator while the generators run: CPU at both ends of the streaming window
        # (each sample carries its own time, so the rate stays right), RSS all along for the peak.
        now = time.monotonic()
        relay = sample(pids["relay"])
        peak_kib[0] = max(peak_kib[0], relay.rss_kib)
        for edge in ("start", "end"):
            if marks[edge] and now >= marks[edge] and not window[edge]:
                if edge == "end" and not window["start"]:
                    continue
                window[edge] = {"relay": relay, "emulator": sample(pids["emulator"])}
                cpus[edge] = cpu_times()

    results = pool.run(audio_job, jobs, on_start=on_start, poll=poll, timeout=args.seconds + args.grace + 120)
    latencies = np.concatenate([np.frombuffer(r["latencies"], dtype=np.float64) for r in results])
    lag = np.concatenate([np.frombuffer(r["lag"], dtype=np.float64) for r in results])
    cpu: dict[str, float | None] = {"relay": None, "emulator": None}
    if window["start"] and window["end"]:
        for name in cpu:
            cpu[name] = cpu_percent(window["start"][name], window["end"][name])
    # The machine may be shared: whatever else ran on the relay's CPU competed with it for the window.
    pinning = stack.pinning
    relay_core = relay_core_irq = load_cores = other_on_relay_core = None
    if len(cpus) == 2:
        relay_core = busy_percent(cpus["start"], cpus["end"], pinning.relay)
        relay_core_irq = busy_percent(cpus["start"], cpus["end"], pinning.relay, ("interrupts",))
        load_cores = busy_percent(cpus["start"], cpus["end"], pinning.others)
        competing = busy_percent(cpus["start"], cpus["end"], pinning.relay, ("tasks", "steal"))
        if competing is not None and cpu["relay"] is not None:
            other_on_relay_core = max(0.0, competing - cpu["relay"])
    chunk_rate = n * 1000 / CHUNK_MS
    relay_us = cpu["relay"] / 100 / chunk_rate * 1e6 if cpu["relay"] is not None else None
    wakeups = None
    if window["start"] and window["end"]:
        start, end = window["start"]["relay"], window["end"]["relay"]
        # Per chunk round trip: how often the relay's event loop went to sleep in epoll and was woken again.
        wakeups = (end.wakeups - start.wakeups) / ((end.at - start.at) * chunk_rate)
    return {
        "path": path,
        "sessions": n,
        "generators": gens,
        "sent": sum(r["sent"] for r in results),
        "echoed": sum(r["echoed"] for r in results),
        "dropped": sum(r["dropped"] for r in results),
        "foreign": sum(r["foreign"] for r in results),
        "corrupted": sum(r["corrupted"] for r in results),
        "error_count": sum(r["error_count"] for r in results),
        "errors": [e for r in results for e in r["errors"]][:5],
        "latency_ms": percentiles(latencies),
        "send_lag_ms": percentiles(lag),
        "chunks_per_s": chunk_rate,
        "relay_cpu_percent": cpu["relay"],
        "relay_cpu_us_per_chunk": relay_us,
        "relay_wakeups_per_chunk": wakeups,
        "emulator_cpu_percent": cpu["emulator"],
        "relay_rss_kib": {
            "before_connect": before.rss_kib,
            "start": window["start"]["relay"].rss_kib if window["start"] else None,
            "peak": peak_kib[0],
        },
        "relay_core_busy_percent": relay_core,
        "relay_core_interrupts_percent": relay_core_irq,
        "relay_core_other_percent": other_on_relay_core,
        "load_cores_busy_percent": load_cores,
        "generator_cpu_percent": [100 * r["cpu_s"] / r["wall_s"] if r["wall_s"] > 0 else None for r in results],
    }


def _mib(kib: int | None) -> str:
    return "n/a" if kib is None else f"{kib / 1024:.1f}"


def _result(args: argparse.Namespace, phases: list[dict[str, Any]], idle_kib: int, notes: list[str]) -> ScenarioResult:
    by = {(p["sessions"], p["path"]): p for p in phases}
    latency = Table(
        "Per-chunk round trip (ms)",
        ["sessions", "relay p50", "relay p99", "relay max", "direct p50", "direct p99", "direct max",
         "**added p50**", "**added p99**"],
    )
    load = Table(
        "Load and resources",
        ["sessions", "path", "chunks/s", "sent", "echoed", "dropped", "relay CPU %", "relay CPU µs/chunk",
         "relay wake-ups/chunk",
         "relay RSS start → peak MiB", "emulator CPU %", "load gen CPU % (each)", "send lag p99 ms",
         "others on relay CPU %", "load CPU busy %"],
    )
    for n in args.sessions:
        relay, direct = by[(n, "relay")]["latency_ms"], by[(n, "direct")]["latency_ms"]
        added = {q: relay[q] - direct[q] if relay[q] is not None and direct[q] is not None else None
                 for q in ("p50", "p99")}
        by[(n, "relay")]["added_ms"] = added
        latency.rows.append([
            str(n), fmt(relay["p50"]), fmt(relay["p99"]), fmt(relay["max"]),
            fmt(direct["p50"]), fmt(direct["p99"]), fmt(direct["max"]),
            f"**{fmt(added['p50'])}**", f"**{fmt(added['p99'])}**",
        ])
        for path in PATHS:
            p = by[(n, path)]
            through_relay = path == "relay"
            rss = p["relay_rss_kib"]
            load.rows.append([
                str(n), path, f"{p['chunks_per_s']:.0f}", str(p["sent"]), str(p["echoed"]), str(p["dropped"]),
                fmt(p["relay_cpu_percent"], 1) if through_relay else "—",
                fmt(p["relay_cpu_us_per_chunk"], 0) if through_relay else "—",
                fmt(p["relay_wakeups_per_chunk"], 2) if through_relay else "—",
                f"{_mib(rss['start'])} → {_mib(rss['peak'])}" if through_relay else "—",
                fmt(p["emulator_cpu_percent"], 1),
                " / ".join(fmt(c, 1) for c in p["generator_cpu_percent"]),
                fmt(p["send_lag_ms"]["p99"]),
                fmt(p["relay_core_other_percent"], 1),
                fmt(p["load_cores_busy_percent"], 0),
            ])
    notes = [*notes, *_warnings(phases)]
    notes += [
        f"Each phase streams {args.seconds:g} s per session: 24 kHz pcm16 in {CHUNK_MS} ms chunks (960 bytes, "
        "1,280 base64 characters) on a fixed schedule, sessions spread evenly over the period. Latency is "
        "measured in the load generator from just before a chunk is sent to the arrival of its echo.",
        "Per session, one warm-up chunk is echoed before the clock starts, so the relay's lazy upstream connect "
        "(made with the first append) is not in the figures.",
        "added = relay percentile - direct percentile (the two phases are separate runs, not paired chunks).",
        "Relay and emulator CPU: /proc/<pid>/stat utime+stime over the streaming window; µs/chunk is the relay's "
        "CPU per chunk round trip (client → relay → emulator and the echo back). RSS: /proc/<pid>/status VmRSS, "
        f"start = with the phase's sessions connected, peak = highest sample; relay RSS idle at start-up "
        f"{_mib(idle_kib)} MiB. Wake-ups/chunk: the relay's voluntary context switches (each a sleep in epoll "
        "ended by new data) per chunk round trip; below 1 means it finds several messages per wake-up.",
        f"Dropped = sent but not echoed within {args.grace:g} s after the last send.",
        "others on relay CPU = the relay CPU's process and hypervisor-steal time (/proc/stat) minus the relay's "
        "own (interrupt time, mostly loopback packet work, is left out): above a few % the machine was not idle. "
        "load CPU busy = the CPU(s) of the emulator and the load generators; near 100 % the direct floor itself "
        "includes queueing.",
    ]
    return ScenarioResult(
        name=NAME,
        title="Audio streaming",
        description=(
            "Per-chunk echo round trip of real-time audio: OpenAI GA `input_audio_buffer.append` through the relay to "
            "the emulator in echo mode and back as `response.output_audio.delta` (relay), against the same client "
            "speaking Gemini Live straight to the emulator (direct)."
        ),
        tables=[latency, load],
        notes=notes,
        data={
            "params": {"sessions": args.sessions, "seconds": args.seconds, "grace": args.grace,
                       "per_generator": args.per_generator, "chunk_ms": CHUNK_MS},
            "relay_rss_idle_kib": idle_kib,
            "phases": phases,
        },
    )


def _warnings(phases: list[dict[str, Any]]) -> list[str]:
    out = []
    for p in phases:
        label = f"{p['sessions']} sessions {p['path']}"
        if p["error_count"]:
            out.append(f"WARNING {label}: {p['error_count']} client errors, e.g. {'; '.join(p['errors'][:2])}")
        if p["foreign"] or p["corrupted"]:
            out.append(f"WARNING {label}: {p['foreign']} unmatched and {p['corrupted']} altered echoes")
        other = p["relay_core_other_percent"]
        if other is not None and other > _FOREIGN_LOAD:
            out.append(f"WARNING {label}: other processes used {other:.0f} % of the relay's CPU during the window; "
                       "the machine was not idle and this phase's figures are not trustworthy")
        load = p["load_cores_busy_percent"]
        if load is not None and load > _SATURATED_LOAD:
            out.append(f"WARNING {label}: the emulator/load generator CPU was {load:.0f} % busy; the floor itself "
                       "is inflated by queueing there")
        busy = [c for c in p["generator_cpu_percent"] if c is not None and c > _SATURATED_CPU]
        if busy:
            out.append(f"WARNING {label}: a load generator used {max(busy):.0f} % of a core; "
                       "client-side delays may be in the figures")
    return out
