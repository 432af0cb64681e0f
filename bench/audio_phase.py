"""One phase of the audio scenario: N sessions streaming through one path, with the resources sampled: the server
under test's, and the load side's (the upstream, the load generators, and how busy the load CPUs were), so a phase
the load side could not drive is told from one the server could not carry."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np

from bench.audio_client import CHUNK_MS, AudioJob, audio_job
from bench.common import Context
from bench.dialects import Endpoint
from bench.procs import LOAD_SATURATED, CpuTimes, ProcSample, busy_percent, cpu_percent, cpu_times, sample
from bench.report import percentiles

_POLL_MARGIN = 0.1  # resource samples land within this of the streaming window's ends, inside it
_SETTLE = 0.5  # seconds for the server to tear the previous phase's sessions down


@attrs.frozen
class PhaseSpec:
    seconds: float
    grace: float
    per_generator: int


def run_phase(
    ctx: Context, endpoint: Endpoint, server_pid: int | Sequence[int] | None, n: int, spec: PhaseSpec, *,
    upstream_pid: int | None = None,
) -> dict[str, Any]:
    """Stream `n` sessions through `endpoint` for `spec.seconds`; `server_pid` is the server under test (None for
    the direct floor; several pids for a relay with workers: the supervisor and its workers, summed), whose CPU and
    memory are read over the streaming window; `upstream_pid` is the upstream it streams to, when not the lab's
    own."""
    assert ctx.lab.upstream_child is not None
    gens = min(ctx.pool.size, math.ceil(n / spec.per_generator))
    jobs = [AudioJob(endpoint, tuple(range(g, n, gens)), n, spec.seconds, spec.grace) for g in range(gens)]
    server_pids = (server_pid,) if isinstance(server_pid, int) else tuple(server_pid or ())
    server_names = [f"server {i}" for i in range(len(server_pids))]
    pids = {"upstream": upstream_pid or ctx.lab.upstream_child.pid, **dict(zip(server_names, server_pids, strict=True))}
    before = {name: sample(pid) for name, pid in pids.items()}
    window: dict[str, dict[str, ProcSample]] = {"start": {}, "end": {}}
    cpus: dict[str, CpuTimes] = {}
    marks = {"start": 0.0, "end": 0.0}

    def server_rss(samples: dict[str, ProcSample]) -> int | None:
        return sum(samples[name].rss_kib for name in server_names) if server_names and samples else None

    peak_kib = [server_rss(before) or 0]

    def on_start(start_at: float) -> None:
        marks["start"] = start_at + _POLL_MARGIN
        marks["end"] = start_at + spec.seconds - _POLL_MARGIN

    def poll() -> None:
        # Sampled from the coordinator while the generators run: CPU at both ends of the streaming window
        # (each sample carries its own time, so the rate stays right), RSS all along for the peak.
        now = time.monotonic()
        if server_names:
            peak_kib[0] = max(peak_kib[0], sum(sample(pids[name]).rss_kib for name in server_names))
        for edge in ("start", "end"):
            if marks[edge] and now >= marks[edge] and not window[edge]:
                if edge == "end" and not window["start"]:
                    continue
                window[edge] = {name: sample(pid) for name, pid in pids.items()}
                cpus[edge] = cpu_times()

    results = ctx.pool.run(audio_job, jobs, on_start=on_start, poll=poll, timeout=spec.seconds + spec.grace + 180)
    time.sleep(_SETTLE)
    latencies = np.concatenate([np.frombuffer(r["latencies"], dtype=np.float64) for r in results])
    lag = np.concatenate([np.frombuffer(r["lag"], dtype=np.float64) for r in results])
    cpu: dict[str, float | None] = {name: None for name in pids}
    if window["start"] and window["end"]:
        for name in pids:
            cpu[name] = cpu_percent(window["start"][name], window["end"][name])
    processes = [cpu[name] for name in server_names]
    known = [c for c in processes if c is not None]
    cpu["server"] = sum(known) if server_names and len(known) == len(processes) else None
    pinning = ctx.pinning
    server_core = other_on_server_core = load_cores = None
    machine: dict[str, float | None] = {}
    if len(cpus) == 2:
        server_core = busy_percent(cpus["start"], cpus["end"], pinning.relay)
        load_cores = busy_percent(cpus["start"], cpus["end"], pinning.others)
        competing = busy_percent(cpus["start"], cpus["end"], pinning.relay, ("tasks", "steal"))
        own = cpu.get("server") or 0.0
        if competing is not None:
            # In % of one CPU, as the server's own figure: the server may have several CPUs (scale scenario).
            other_on_server_core = max(0.0, competing * len(pinning.relay or (0,)) - own)
        # Where the whole machine's CPU went, in % of one CPU: what shares it when nothing is pinned apart.
        every = (pinning.relay | pinning.others) if pinning.relay and pinning.others else frozenset(cpus["start"])
        for part in ("tasks", "interrupts", "steal"):
            share = busy_percent(cpus["start"], cpus["end"], every, (part,))
            machine[part] = share * len(every) if share is not None else None
    chunk_rate = n * 1000 / CHUNK_MS
    server_cpu = cpu.get("server")
    generators = [100 * r["cpu_s"] / r["wall_s"] if r["wall_s"] > 0 else None for r in results]
    # The load side's own processes (the upstream and the generators; the coordinator only samples) per chunk round
    # trip, and the load CPUs' whole busy time per chunk (their processes, the kernel's packet work, anything else).
    own = [c for c in (cpu["upstream"], *generators) if c is not None]
    load_cpus = len(pinning.others) if pinning.others else None
    per_chunk = 1e6 / 100 / chunk_rate
    return {
        "path": endpoint.label,
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
        "server_cpu_percent": server_cpu,
        # Per process (the supervisor, then each worker) when the server is more than one.
        "server_process_cpu_percent": processes if len(server_names) > 1 else None,
        "server_pids": list(server_pids),
        "server_cpu_us_per_chunk": server_cpu / 100 / chunk_rate * 1e6 if server_cpu is not None else None,
        "upstream_cpu_percent": cpu["upstream"],
        "generator_cpu_percent": generators,
        "load_cpu_us_per_chunk": sum(own) * per_chunk if own else None,
        "load_cores_us_per_chunk": load_cores * load_cpus * per_chunk
        if load_cores is not None and load_cpus else None,
        "server_rss_kib": {
            "before_connect": server_rss(before),
            "streaming": server_rss(window["start"]),
            "peak": peak_kib[0] if server_names else None,
        },
        "server_core_busy_percent": server_core,
        "server_core_other_percent": other_on_server_core,
        "load_cores_busy_percent": load_cores,
        # Every usable CPU over the window in % of one CPU (200 = two CPUs): processes (ours and anyone's), the
        # kernel's interrupt and softirq work (loopback packets, charged to no process), and steal.
        "machine_cpu_percent": machine,
        "load_limited": load_cores is not None and load_cores >= LOAD_SATURATED,
    }


def healthy(p: dict[str, Any]) -> bool:
    """Every chunk came back, unaltered, to the session that sent it, and no client saw an error."""
    return not (p["dropped"] or p["error_count"] or p["foreign"] or p["corrupted"]) and p["echoed"] > 0
