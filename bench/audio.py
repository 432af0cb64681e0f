"""Scenario "audio": full-duplex real-time audio sessions per server core.

Each session streams 24 kHz pcm16 in 20 ms chunks on a fixed schedule to the echo upstream
(`bench.echo_upstream`, cheap enough that the load side is not the limit) and times each chunk's echo. A
phase runs N sessions for SECONDS through one path. For every server under test (the relay per transport,
the bare forwarder per transport, LiteLLM with --peer litellm), pinned alone to one core, the scenario
searches the largest N at which no chunk is dropped and the p99 round trip exceeds the direct floor's p99 at
the same N (the same client speaking Gemini Live straight to the upstream) by less than ADDED_P99 ms: N
doubles from START (up to MAX_SESSIONS) until a phase fails, then the interval is bisected to within 10 %,
within a time budget per server. A failing phase is run once more and counts only if it fails again (a
shared VM has stray stalls). A floor that fails at N (measured twice) means the load side (the upstream and
the load generators, sharing the other core) cannot drive N sessions, and so does a server phase that fails
while the load CPU is at least 90 % busy and the server's core is not: the server is then credited with at
least the largest N that passed, "limited by the load side".

After its search every server is also measured at the COMPARE counts it carried but the search did not try, so
the report compares the servers' CPU per chunk at equal N.

With --sessions N [N ...] it runs those counts on every path instead of searching.
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

from bench.audio_phase import PhaseSpec, healthy, run_phase
from bench.audio_report import result
from bench.common import Context, Subject, each_path
from bench.procs import LOAD_SATURATED
from bench.report import ScenarioResult

NAME = "audio"
HELP = "20 ms full-duplex audio sessions per server core (largest N with p99 added < 50 ms, none dropped)"
UPSTREAM = "echo"  # the full emulator would cost the load CPU as much per chunk as the server under test
_RESOLUTION = 0.1  # the search stops once the pass/fail interval is within this share of the passing N
_SATURATED = 90.0  # % busy: a server CPU this busy queues work


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sessions", type=int, nargs="+", metavar="N",
                        help="run these session counts on every path instead of searching")
    parser.add_argument("--seconds", type=float, default=4.0, help="streaming time per phase (default: 4)")
    parser.add_argument("--grace", type=float, default=1.0,
                        help="seconds to wait for outstanding echoes after the last send (default: 1)")
    parser.add_argument("--start", type=int, default=20, help="first N of the search (default: 20)")
    parser.add_argument("--max-sessions", type=int, default=300, help="largest N the search tries (default: 300)")
    parser.add_argument("--search-seconds", type=float, default=80.0,
                        help="time budget of the search per server, comparison phases aside (default: 80)")
    parser.add_argument("--added-p99-ms", type=float, default=50.0,
                        help="largest p99 the server may add to the direct floor (default: 50)")
    parser.add_argument("--per-generator", type=int, default=100, metavar="M",
                        help="sessions per load generator process (default: 100)")
    parser.add_argument("--compare", type=int, nargs="*", default=[75, 150], metavar="N",
                        help="session counts at which every server that carried them is measured, for the CPU per "
                             "chunk at equal N (default: 75 150; none with --sessions)")


class Floors:
    """The direct floor per N, measured once and reused by every server's search; `scenario` names the progress
    lines of every search that uses them."""

    def __init__(self, ctx: Context, spec: PhaseSpec, scenario: str = NAME) -> None:
        self.ctx = ctx
        self.spec = spec
        self.scenario = scenario
        self.phases: dict[int, dict[str, Any]] = {}
        self.confirmed: set[int] = set()  # floors measured twice

    def at(self, n: int, again: bool = False) -> dict[str, Any]:
        if n not in self.phases or again:
            self.ctx.progress(f"{self.scenario}: direct: {n} sessions" + (" (again)" if again else ""))
            self.phases[n] = run_phase(self.ctx, self.ctx.lab.direct, None, n, self.spec)
        return self.phases[n]


def _judge(p: dict[str, Any], floor: dict[str, Any], limit: float) -> str | None:
    """None if the phase passes, else why not."""
    if not healthy(p):
        return f"{p['dropped']} dropped, {p['error_count']} errors"
    added = p["latency_ms"]["p99"] - floor["latency_ms"]["p99"]
    p["added_p99_ms"] = added
    return None if added < limit else f"p99 added {added:.1f} ms"


def _floor_fails(floor: dict[str, Any], limit: float) -> str | None:
    if not healthy(floor):
        return f"the direct floor dropped {floor['dropped']} chunks ({floor['error_count']} errors)"
    if floor["latency_ms"]["p99"] >= limit:
        return f"the direct floor's p99 is {floor['latency_ms']['p99']:.1f} ms"
    return None


def _try(
    ctx: Context, s: Subject, floors: Floors, n: int, args: argparse.Namespace, spec: PhaseSpec,
    phases: list[dict[str, Any]],
) -> tuple[str | None, str]:
    """Whether the server passes at n: (None, "") or (why not, "server" / "load side"). A failure counts only if
    it repeats: on a shared VM one phase can fail for reasons of its own (another process, a stalled vCPU)."""
    assert s.server is not None
    floor = floors.at(n)
    if _floor_fails(floor, args.added_p99_ms) is not None and n not in floors.confirmed:
        floor = floors.at(n, again=True)
        floors.confirmed.add(n)  # measured twice: the next server's search takes it as it is
    if (floor_why := _floor_fails(floor, args.added_p99_ms)) is not None:
        return floor_why, "load side"
    why: str | None = None
    measured = len(phases)
    for attempt in range(2):
        ctx.progress(f"{floors.scenario}: {s.label}: {n} sessions" + (" (again)" if attempt else ""))
        try:
            p = run_phase(ctx, s.endpoint, s.server.pids, n, spec)
        except Exception as exc:  # e.g. sessions that never open: this N fails, the search goes on
            ctx.reset_pool()
            ctx.lab.check_server(s.server)
            why = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else ''}"
            ctx.progress(f"{floors.scenario}: {s.label}: {n} sessions: fail: {why}")
            continue
        phases.append(p)
        why = _judge(p, floor, args.added_p99_ms)
        p["verdict"] = "pass" if why is None else f"fail: {why}"
        ctx.progress(f"{floors.scenario}: {s.label}: {n} sessions: {p['verdict']}")
        ctx.lab.check_server(s.server)
        if why is None:
            return None, ""
    # A failure while the load CPU was saturated and the server's was not is the load side's: on two cores the
    # emulator and the generators cost about as much per chunk as a bare forwarder does.
    last = phases[-1] if len(phases) > measured else None
    load = last["load_cores_busy_percent"] if last is not None else None
    own = last["server_core_busy_percent"] if last is not None else None
    if load is not None and own is not None and load >= LOAD_SATURATED and own < _SATURATED:
        return f"{why} (load CPU {load:.0f} % busy, server core {own:.0f} %)", "load side"
    return why, "server"


def search(ctx: Context, s: Subject, floors: Floors, args: argparse.Namespace, spec: PhaseSpec) -> dict[str, Any]:
    phases: list[dict[str, Any]] = []
    lo, hi, hi_reason, hi_by = 0, None, "", ""
    n = args.start
    deadline = time.monotonic() + args.search_seconds
    while True:
        if n > args.max_sessions:
            stop = f"the search's cap ({args.max_sessions})"
            break
        if time.monotonic() > deadline:
            stop = f"the search's time budget ({args.search_seconds:g} s)"
            break
        why, by = _try(ctx, s, floors, n, args, spec, phases)
        if why is None:
            lo = n
        else:
            hi, hi_reason, hi_by = n, why, by
        if hi is None:
            if lo >= args.max_sessions:
                stop = f"the search's cap ({args.max_sessions})"
                break
            n = min(n * 2, args.max_sessions)
            continue
        if hi - lo <= max(1, lo * _RESOLUTION):
            stop = "the server" if hi_by == "server" else "the load side"
            break
        n = (lo + hi) // 2
    passing = [p for p in phases if p["verdict"] == "pass" and p["sessions"] == lo]
    _compare(ctx, s, floors, args, spec, phases, lo)
    return {"max_sessions": lo, "limited_by": stop, "first_failure": {"sessions": hi, "reason": hi_reason}
            if hi is not None else None, "at_max": passing[-1] if passing else None, "phases": phases}


def _compare(
    ctx: Context, s: Subject, floors: Floors, args: argparse.Namespace, spec: PhaseSpec,
    phases: list[dict[str, Any]], carried: int,
) -> None:
    """One phase at each --compare count the server carried (at most its largest passing N) that its search did not
    try: the search's own counts depend on where each server failed, so equal N would otherwise be rare."""
    assert s.server is not None
    tried = {p["sessions"] for p in phases}
    for n in sorted(set(args.compare or ())):
        if n in tried or n > carried:
            continue
        floor = floors.at(n)
        ctx.progress(f"{floors.scenario}: {s.label}: {n} sessions (for the equal-N comparison)")
        p = run_phase(ctx, s.endpoint, s.server.pids, n, spec)
        why = _judge(p, floor, args.added_p99_ms)
        p["verdict"] = "compare: " + ("pass" if why is None else f"fail: {why}")
        phases.append(p)
        ctx.lab.check_server(s.server)


def sweep(ctx: Context, s: Subject, floors: Floors, args: argparse.Namespace, spec: PhaseSpec) -> dict[str, Any]:
    assert s.server is not None
    phases = []
    for n in args.sessions:
        floor = floors.at(n)
        ctx.progress(f"{floors.scenario}: {s.label}: {n} sessions")
        p = run_phase(ctx, s.endpoint, s.server.pids, n, spec)
        why = _judge(p, floor, args.added_p99_ms)
        p["verdict"] = "pass" if why is None else f"fail: {why}"
        phases.append(p)
        ctx.lab.check_server(s.server)
    passing = [p for p in phases if p["verdict"] == "pass"]
    best = max(passing, key=lambda p: p["sessions"]) if passing else None
    return {"max_sessions": best["sessions"] if best else 0, "limited_by": "the fixed sweep (--sessions)",
            "first_failure": None, "at_max": best, "phases": phases}


def generators(args: argparse.Namespace) -> int:
    """Load generator processes the largest phase wants."""
    return math.ceil(max(args.sessions or [args.max_sessions]) / args.per_generator)


def run(args: argparse.Namespace, ctx: Context) -> ScenarioResult:
    if args.seconds <= 0 or args.per_generator < 1 or args.start < 1 or args.max_sessions < 1:
        raise ValueError("--seconds, --per-generator, --start and --max-sessions must be positive")
    if args.sessions and any(n < 1 for n in args.sessions):
        raise ValueError("--sessions must be positive")
    spec = PhaseSpec(args.seconds, args.grace, args.per_generator)
    floors = Floors(ctx, spec)
    if args.sessions:  # the floor first, as the report reads it
        for n in args.sessions:
            floors.at(n)

    def measure(s: Subject) -> dict[str, Any]:
        assert s.server is not None
        found = (sweep if args.sessions else search)(ctx, s, floors, args, spec)
        return {**found, "rss_start_kib": s.server.started.rss_kib}

    servers = each_path(ctx, NAME, measure, kinds=("relay", "bare", "litellm"), direct=False)
    return result(args, servers, floors.phases, ctx)
