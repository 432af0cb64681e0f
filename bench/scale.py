"""Scenario "scale": how full-duplex audio sessions per machine grow with `serve --workers`.

The audio scenario's search (the largest N with nothing dropped and a p99 round trip less than ADDED_P99 ms above
the direct floor's at the same N; doubling from START, then bisecting to within 10 %, a failure counting only if it
repeats) runs against the relay started as `python -m relay serve --workers W` for each W in --workers (1 and 2),
per transport, and the report gives sessions(2) / sessions(1).

Pinning: the audio scenario gives the server one CPU and the load side (the echo upstream, the load generators,
the coordinator) the other, which a relay with two workers cannot live with on a 2-CPU machine. Here every
process of the run may use every CPU, for both worker counts alike, so the ratio compares like with like: the
machine is the unit, and the load side takes its share of it in both configurations. With one worker the relay
can use at most one CPU and the load side fits on the rest; with two the relay and the load side compete, so the
ratio of sessions is bounded by how much of the machine the load side needs. The report therefore splits every
phase's CPU between the relay's processes (the supervisor and each worker, from /proc), the upstream, the
generators, the kernel's packet work and anything else, and gives sessions per relay core (N / the relay's CPU
share): the figure that says whether the relay itself scales, whatever the load side took.

The direct floor is measured with the same pinning, once per N for every configuration.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import attrs

from bench.audio import Floors, search, sweep
from bench.audio_phase import PhaseSpec
from bench.common import Context, Subject, fmt_ratio, mib, ratio
from bench.loadgen import GeneratorPool
from bench.procs import Pinning, pin, sample
from bench.report import ScenarioResult, Table, fmt
from bench.servers import Target

NAME = "scale"
HELP = "audio sessions per machine with serve --workers 1 and 2, every process on every CPU: the scale-out ratio"
UPSTREAM = "echo"  # as in the audio scenario: the emulator would cost the shared CPUs as much as the relay
_FOREIGN = 10.0  # % of one CPU taken by other processes in a phase: something else shares the machine
TARGET_RATIO = 1.8  # 2 workers on 2 cores against one worker; also the Targets table's


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], metavar="W",
                        help="worker counts to measure, each as `serve --workers W` (default: 1 2)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="searches per configuration, the configurations taking turns; the report takes each "
                             "one's best (default: 1)")
    parser.add_argument("--sessions", type=int, nargs="+", metavar="N",
                        help="run these session counts on every configuration instead of searching")
    parser.add_argument("--seconds", type=float, default=4.0, help="streaming time per phase (default: 4)")
    parser.add_argument("--grace", type=float, default=1.0,
                        help="seconds to wait for outstanding echoes after the last send (default: 1)")
    parser.add_argument("--start", type=int, default=20, help="first N of the search (default: 20)")
    parser.add_argument("--max-sessions", type=int, default=400, help="largest N the search tries (default: 400)")
    parser.add_argument("--search-seconds", type=float, default=50.0,
                        help="time budget of each search (default: 50)")
    parser.add_argument("--added-p99-ms", type=float, default=50.0,
                        help="largest p99 the relay may add to the direct floor (default: 50)")
    parser.add_argument("--per-generator", type=int, default=100, metavar="M",
                        help="sessions per load generator process (default: 100)")
    parser.add_argument("--compare", type=int, nargs="*", default=[], metavar="N",
                        help="extra session counts at which every configuration that carried them is measured "
                             "(default: none; the doubling search already tries 20, 40, 80... on each)")


def generators(args: argparse.Namespace) -> int:
    return math.ceil(max(args.sessions or [args.max_sessions]) / args.per_generator)


@contextmanager
def whole_machine(ctx: Context) -> Iterator[Context]:
    """`ctx` with every process of the run allowed on every CPU the run has (relay, upstream, generators,
    coordinator), restored afterwards: the generators are a new pool, as a process pins itself once at start."""
    pinning = ctx.pinning
    if not pinning.active or pinning.relay is None or pinning.others is None:
        yield ctx
        return
    every = pinning.relay | pinning.others
    cpus = ",".join(map(str, sorted(every)))
    shared = Pinning(every, every, f"scale scenario: relay processes, upstream, load generators and coordinator "
                                   f"all on CPUs {cpus}")
    lab = ctx.lab
    upstream = lab.upstream_child.pid if lab.upstream_child is not None else None
    previous = lab.pinning
    lab.pinning = shared  # what lab.serve pins the relay and its workers to
    errors = [pin(0, every)] + ([pin(upstream, every)] if upstream else [])
    lab.notes += [e for e in errors if e and e not in lab.notes]
    if shared.note not in lab.notes:
        lab.notes.append(shared.note)
    inner = attrs.evolve(ctx, pinning=shared, pool=GeneratorPool(ctx.pool.size, every))
    try:
        yield inner
    finally:
        inner.pool.close()  # the one in use: a failed phase replaces the pool
        lab.pinning = previous
        pin(0, pinning.others)
        if upstream:
            pin(upstream, pinning.others)


def _measure(ctx: Context, target: Target, floors: Floors, args: argparse.Namespace,
             spec: PhaseSpec) -> dict[str, Any]:
    """One search (or sweep) of `target`; a relay that fails is reported, not fatal."""
    try:
        with ctx.lab.serve(target) as server:
            s = Subject(target.label, server.endpoint, server)
            rss_start = sum(sample(pid).rss_kib for pid in server.pids)
            found = (sweep if args.sessions else search)(ctx, s, floors, args, spec)
            return {**found, "pids": list(server.pids), "rss_start_kib": rss_start}
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}".strip()
        ctx.progress(f"{NAME}: {target.label} FAILED: {reason}")
        ctx.reset_pool()
        ctx.failures.append(f"{NAME}: {target.label}")
        return {"failed": reason[-1500:]}


def run(args: argparse.Namespace, ctx: Context) -> ScenarioResult:
    if args.seconds <= 0 or args.per_generator < 1 or args.start < 1 or args.max_sessions < 1 or args.rounds < 1:
        raise ValueError("--seconds, --per-generator, --start, --max-sessions and --rounds must be positive")
    if any(w < 1 for w in args.workers) or (args.sessions and any(n < 1 for n in args.sessions)):
        raise ValueError("--workers and --sessions must be positive")
    spec = PhaseSpec(args.seconds, args.grace, args.per_generator)
    workers = list(dict.fromkeys(args.workers))
    configs: dict[str, dict[str, Any]] = {}
    with whole_machine(ctx) as shared:
        floors = Floors(shared, spec, NAME)
        for n in args.sessions or ():  # the floor first, as the report reads it
            floors.at(n)
        for transport in ctx.lab.relay_transports:
            for _ in range(args.rounds):
                for w in workers:  # taking turns, so that a slow spell of a shared VM does not hit one alone
                    target = Target("relay", transport, workers=w)
                    config = configs.setdefault(target.label, {"kind": "relay", "transport": transport,
                                                               "workers": w, "runs": []})
                    config["runs"].append(_measure(shared, target, floors, args, spec))
        cpus = len(shared.pinning.relay) if shared.pinning.relay else None
    for config in configs.values():
        _derive(config)
    ratios = _ratios(configs, workers)
    return _result(args, configs, ratios, floors.phases, cpus, ctx.pinning.active)


def _best_run(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The run with the largest N, failed runs aside: on a shared machine another program only ever takes CPU
    away, so the best run is the one least disturbed (the audio search repeats a failing phase for the same
    reason)."""
    ok = [r for r in runs if "failed" not in r]
    return max(ok, key=lambda r: r["max_sessions"]) if ok else None


def split(p: dict[str, Any]) -> dict[str, float | None]:
    """Where the machine's CPU went in a phase, in % of one CPU: the relay's processes, the upstream, the generators,
    other processes (the coordinator, anything else running), the kernel's interrupt work, steal, and idle."""
    machine = p.get("machine_cpu_percent") or {}
    relay, upstream = p.get("server_cpu_percent"), p["upstream_cpu_percent"]
    gens = [g for g in p["generator_cpu_percent"] if g is not None]
    generators = sum(gens) if gens else None
    tasks = machine.get("tasks")
    ours = [c for c in (relay, upstream, generators) if c is not None]
    return {"relay": relay, "upstream": upstream, "generators": generators,
            "other": max(0.0, tasks - sum(ours)) if tasks is not None else None,
            "interrupts": machine.get("interrupts"), "steal": machine.get("steal")}


def _derive(config: dict[str, Any]) -> None:
    run_ = _best_run(config["runs"])
    config["best"] = run_
    config["undisturbed"] = dict(zip(("passed", "failed"), undisturbed(config["runs"]), strict=True))
    config["max_sessions"] = run_["max_sessions"] if run_ else None
    p = run_["at_max"] if run_ else None
    config["cpu"] = split(p) if p else None
    relay = p["server_cpu_percent"] if p else None
    # N / the relay's CPU share: sessions per relay CPU-second per second, what a whole core of relay would carry.
    config["sessions_per_relay_core"] = run_["max_sessions"] / (relay / 100) if run_ and relay else None


def _ratios(configs: dict[str, dict[str, Any]], workers: list[int]) -> dict[str, dict[str, Any]]:
    """Per transport, most workers against one: sessions, and sessions per relay core."""
    if 1 not in workers or len(workers) < 2:
        return {}
    most = max(workers)
    out = {}
    for transport in dict.fromkeys(c["transport"] for c in configs.values()):
        one = configs.get(Target("relay", transport, workers=1).label, {})
        many = configs.get(Target("relay", transport, workers=most).label, {})
        out[f"relay {transport}"] = {
            "workers": most,
            "sessions": [one.get("max_sessions"), many.get("max_sessions")],
            "ratio": ratio(many.get("max_sessions"), one.get("max_sessions")),
            "per_relay_core_ratio": ratio(many.get("sessions_per_relay_core"), one.get("sessions_per_relay_core")),
            "relay_cpu_percent": [(c.get("cpu") or {}).get("relay") for c in (one, many)],
            "undisturbed_passed": [(c.get("undisturbed") or {}).get("passed") for c in (one, many)],
        }
    return out


def undisturbed(runs: list[dict[str, Any]]) -> tuple[int | None, int | None]:
    """The largest N that passed and the smallest that failed in phases no other process disturbed (over every run):
    on a shared machine the bracket the search's own verdicts cannot give, as they mix disturbed phases in."""
    clean = [p for r in runs if "failed" not in r for p in r["phases"] if not _foreign(p)]
    passed = [p["sessions"] for p in clean if p.get("verdict", "").endswith("pass")]
    failed = [p["sessions"] for p in clean if "fail" in p.get("verdict", "")]
    return max(passed, default=None), min(failed, default=None)


def _first_failure_phase(run_: dict[str, Any]) -> dict[str, Any] | None:
    fail = run_.get("first_failure")
    if not fail:
        return None
    at = [p for p in run_["phases"] if p["sessions"] == fail["sessions"] and "fail" in p.get("verdict", "")]
    return at[-1] if at else None


def _foreign(p: dict[str, Any] | None) -> str:
    """A mark for a phase during which other processes took a noticeable share of the machine."""
    other = split(p)["other"] if p is not None else None
    return f" **(other processes {other:.0f} %)**" if other is not None and other > _FOREIGN else ""


def _busy(p: dict[str, Any] | None, cpus: int | None) -> str:
    """How busy the machine was, in % of all its CPUs."""
    if p is None or not cpus:
        return "n/a"
    parts = [v for v in (p.get("machine_cpu_percent") or {}).values() if v is not None]
    return fmt(sum(parts) / cpus, 0) if parts else "n/a"


def _relay_cpu(p: dict[str, Any]) -> str:
    """The relay's CPU %, and under workers its processes': the supervisor + each worker."""
    total = fmt(p["server_cpu_percent"], 0)
    each = p.get("server_process_cpu_percent")
    if not each:
        return total
    return f"{total} ({' + '.join(fmt(c, 0) for c in each)})"


def _result(args: argparse.Namespace, configs: dict[str, dict[str, Any]], ratios: dict[str, dict[str, Any]],
            floors: dict[int, dict[str, Any]], cpus: int | None, pinned: bool) -> ScenarioResult:
    summary = Table(
        f"Sessions per machine by worker count (p99 added < {args.added_p99_ms:g} ms, nothing dropped)",
        ["relay", "workers", "**sessions**", "runs", "undisturbed: passed / failed at", "limited by", "first failure",
         "machine busy % at failure", "p99 ms", "added p99 ms", "relay CPU %", "upstream CPU %", "generators CPU %",
         "other CPU %", "softirq CPU %", "machine busy %", "relay µs/chunk", "sessions per relay core",
         "relay RSS MiB"],
    )
    for c in configs.values():
        run_ = c["best"]
        if run_ is None:
            failed = next((r["failed"] for r in c["runs"] if "failed" in r), "no run")
            summary.rows.append([f"relay {c['transport']}", str(c["workers"]),
                                 "failed: " + failed.splitlines()[0][:150], *["—"] * 16])
            continue
        p, cpu, fail = run_["at_max"], c["cpu"] or {}, run_["first_failure"]
        floor = floors.get(run_["max_sessions"]) if p else None
        summary.rows.append([
            f"relay {c['transport']}", str(c["workers"]), f"**{run_['max_sessions']}**",
            ", ".join(str(r.get("max_sessions", "failed")) for r in c["runs"]),
            " / ".join("—" if v is None else str(v) for v in c["undisturbed"].values()), run_["limited_by"],
            f"{fail['sessions']}: {fail['reason']}{_foreign(_first_failure_phase(run_))}" if fail else "—",
            _busy(_first_failure_phase(run_), cpus),
            fmt(p["latency_ms"]["p99"]) if p else "n/a",
            fmt(p["latency_ms"]["p99"] - floor["latency_ms"]["p99"]) if p and floor else "n/a",
            _relay_cpu(p) if p else "n/a", fmt(cpu.get("upstream"), 0), fmt(cpu.get("generators"), 0),
            fmt(cpu.get("other"), 0), fmt(cpu.get("interrupts"), 0), _busy(p, cpus),
            fmt(p["server_cpu_us_per_chunk"], 0) if p else "n/a", fmt(c["sessions_per_relay_core"], 0),
            mib(p["server_rss_kib"]["streaming"]) if p else "n/a",
        ])
    scale = Table("Scale-out", ["relay", "sessions, 1 worker", "sessions, most workers", "**ratio**",
                                f"target ≥ {TARGET_RATIO:g}x", "sessions per relay core ratio",
                                "relay CPU %, 1 worker / most workers", "undisturbed passes, 1 worker / most workers"])
    for label, r in ratios.items():
        met = "n/a" if r["ratio"] is None else ("met" if r["ratio"] >= TARGET_RATIO else "**not met**")
        scale.rows.append([
            label, str(r["sessions"][0]), f"{r['sessions'][1]} ({r['workers']} workers)",
            f"**{fmt_ratio(r['ratio'])}**", met, fmt_ratio(r["per_relay_core_ratio"]),
            " / ".join(fmt(c, 0) for c in r["relay_cpu_percent"]),
            " / ".join("—" if v is None else str(v) for v in r["undisturbed_passed"]),
        ])
    phases = Table(
        "Every phase",
        ["path", "sessions", "p50 ms", "p99 ms", "max ms", "direct p99 ms", "sent", "dropped", "relay CPU %",
         "upstream CPU %", "generators CPU %", "other CPU %", "softirq CPU %", "machine busy %", "relay µs/chunk",
         "verdict"],
    )
    rows = [("direct", p) for _, p in sorted(floors.items())]
    rows += [(label, p) for label, c in configs.items() for r in c["runs"] if "failed" not in r for p in r["phases"]]
    for label, p in rows:
        floor = floors.get(p["sessions"]) if label != "direct" else None
        cpu = split(p)
        phases.rows.append([
            label, str(p["sessions"]), fmt(p["latency_ms"]["p50"]), fmt(p["latency_ms"]["p99"]),
            fmt(p["latency_ms"]["max"]), fmt(floor["latency_ms"]["p99"]) if floor else "—", str(p["sent"]),
            str(p["dropped"]), _relay_cpu(p) if label != "direct" else "—", fmt(cpu["upstream"], 0),
            fmt(cpu["generators"], 0), fmt(cpu["other"], 0), fmt(cpu["interrupts"], 0), _busy(p, cpus),
            fmt(p["server_cpu_us_per_chunk"], 0),
            p.get("verdict", "floor" if label == "direct" else "—") + _foreign(p),
        ])
    where = (f"every process of the run (the relay's, the echo upstream, the load generators, the coordinator) may "
             f"use all {cpus} CPUs, for every worker count alike") if pinned else "nothing is pinned"
    disturbed = sum(1 for _, p in rows if _foreign(p))
    notes = [f"WARNING: in {disturbed} of {len(rows)} phases other processes took more than {_FOREIGN:g} % of a "
             "CPU (marked): the machine was shared, and a failure so marked may be the other program's."
             ] if disturbed else []
    notes += [
        f"Pinning: {where}; the audio scenario instead gives the server one CPU alone, so its sessions per core are "
        "not this table's sessions per machine. With one worker the relay uses at most one CPU and the load side "
        "fits beside it; with more, the relay and the load side share the machine, so the ratio of sessions is "
        "bounded by the load side's share: sessions per relay core (N / relay CPU share at the largest passing N) "
        "is the figure to read for whether the relay itself scales.",
        "CPU, in % of one CPU (the machine has "
        f"{cpus or '?'} x 100): relay = the supervisor's and every worker's /proc utime+stime over the streaming "
        "window (under workers: total (supervisor + worker 0 + worker 1 ...)); upstream = the echo upstream; "
        "generators = the load generator processes; other = every process's time on the machine (/proc/stat) "
        "minus those three: the coordinator, and anything else running, such as another benchmark; softirq = the "
        "kernel's interrupt work, mostly the loopback packets of these sockets, charged to no process. Machine busy "
        "% = all of it (steal too) over all CPUs.",
        "The workers share the port with SO_REUSEPORT: the kernel hashes each new connection to one worker, so "
        "their loads differ by a few sessions, and the busier worker fails first.",
        "The search and its rules are the audio scenario's (see there), against a direct floor measured with the "
        "same pinning. `runs` lists each search's result; the row is the best run's (another program on the machine "
        "only lowers a result). Undisturbed: the largest N passed and the smallest N failed in phases where "
        f"other processes took at most {_FOREIGN:g} % of a CPU, over every run. The relay's CPUs and the load "
        "side's are the same here, so only a failing floor marks a failure as the load side's: the load side's cost "
        "is part of the figure, and the CPU split says how big.",
    ]
    return ScenarioResult(
        name=NAME,
        title="Scale-out: sessions per machine by worker count",
        description="Full-duplex 20 ms audio sessions the relay carries on the whole machine as `serve --workers 1` "
                    "and `--workers 2`, and the ratio.",
        tables=[scale, summary, phases],
        notes=notes,
        data={"params": {k: getattr(args, k) for k in ("workers", "rounds", "sessions", "seconds", "grace", "start",
                                                        "max_sessions", "search_seconds", "added_p99_ms",
                                                        "per_generator", "compare")},
              "cpus": cpus, "configs": configs, "ratios": ratios, "direct": {str(n): p for n, p in floors.items()}},
    )
