"""`python -m bench SCENARIO [options]`: run a scenario (or `all`), write markdown and JSON, print the markdown.

A scenario is a module with NAME, HELP, `add_arguments(parser)` and `run(args, ctx)` returning a
`ScenarioResult`; adding one is adding it to SCENARIOS. Every scenario also takes `--transports` (the relay
is run once per transport, side by side), `--peer litellm`, and `--out` or `--update-results` (see out_path).
`all` runs every scenario with its defaults in one run (one emulator, one pool of load generators) and adds the
Targets table.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

from bench import audio, audio_reply, connect, idle, loops, scale, targets, text, tls
from bench.common import Context
from bench.loadgen import GeneratorPool
from bench.machine import facts, wakeup_lateness
from bench.peer import PeerUnavailable, ensure_litellm
from bench.procs import busy_percent, cpu_times, pin, plan_pinning, raise_nofile
from bench.report import ScenarioResult, write
from bench.servers import TRANSPORTS, Lab, relay_transports

SCENARIOS: dict[str, ModuleType] = {m.NAME: m for m in (text, audio_reply, idle, connect, audio, scale, tls)}
# A run writes into a fresh ignored folder, so that benchmarking does not dirty the checkout; the committed report
# (quoted by the README) is replaced only on purpose, with --update-results.
RUNS_DIR = Path("bench/runs")
COMMITTED_OUT = Path("bench/results.md")
_BUSY = 10.0  # % of a CPU in use before the run that makes it a noisy machine
_POOL = 4  # most load generator processes: enough to spread a few hundred audio sessions


def _busy_text(background: dict[int, float | None]) -> str:
    return ", ".join(f"CPU{cpu} {b:.0f} %" if b is not None else f"CPU{cpu} n/a" for cpu, b in background.items())


def _upstreams_text(kinds: list[str], emulator_transport: str, modules: list[ModuleType]) -> str:
    """Which upstream served which scenarios, for the report header."""
    parts = []
    for kind in kinds:
        names = ", ".join(m.NAME for m in modules if getattr(m, "UPSTREAM", "emulator") == kind)
        what = f"the emulator over {emulator_transport}" if kind == "emulator" else "bench.echo_upstream"
        parts.append(f"{what} for {names}")
    return "; ".join(parts)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--transports", nargs="+", choices=TRANSPORTS, metavar="T",
                        help="relay transports to run, each in its own relay process (default: both if "
                             "`python -m relay serve --help` lists --transport, else trio-websocket)")
    parser.add_argument("--peer", choices=("litellm",),
                        help="also measure LiteLLM's realtime proxy (installed into .bench-venvs/litellm)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--out", type=Path,
                       help=f"markdown report; the JSON goes beside it (default: {RUNS_DIR}/<UTC time>/results.md, "
                            "ignored by git)")
    where.add_argument("--update-results", action="store_true",
                       help=f"write the committed report, {COMMITTED_OUT} and .json, instead")


def out_path(args: argparse.Namespace, now: datetime) -> Path:
    """Where the report goes: --out, the committed report with --update-results, else a new folder under RUNS_DIR."""
    if args.out is not None:
        return args.out
    if args.update_results:
        return COMMITTED_OUT
    return RUNS_DIR / now.strftime("%Y%m%dT%H%M%SZ") / "results.md"


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Benchmarks of the relay against the emulator.")
    sub = parser.add_subparsers(dest="scenario", required=True, metavar="SCENARIO")
    everything = sub.add_parser("all", help="every scenario with its defaults, and the Targets table",
                                description="Every scenario in one run: " + ", ".join(SCENARIOS) + ".")
    _common(everything)
    for module in SCENARIOS.values():
        scenario = sub.add_parser(module.NAME, help=module.HELP, description=module.__doc__)
        module.add_arguments(scenario)
        _common(scenario)
    return parser


def _defaults(module: ModuleType, common: argparse.Namespace) -> argparse.Namespace:
    """A scenario's own defaults plus the run's common options, for `all`."""
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    args = parser.parse_args([])
    for name in ("transports", "peer", "out", "update_results"):
        setattr(args, name, getattr(common, name))
    return args


def _failed(module: ModuleType, exc: BaseException) -> ScenarioResult:
    return ScenarioResult(name=module.NAME, title=f"{module.NAME}: FAILED", description=f"`{type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}`", data={"failed": repr(exc)[:2000]})


def main(argv: list[str] | None = None, prog: str = "python -m bench") -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser(prog).parse_args(argv)
    args.out = out_path(args, datetime.now(UTC))
    modules = list(SCENARIOS.values()) if args.scenario == "all" else [SCENARIOS[args.scenario]]
    machine = facts()  # before pinning narrows what this process sees
    pinning = plan_pinning()
    pin_notes = [pinning.note]
    soft, hard = raise_nofile()
    machine["nofile_limit"] = {"soft": soft, "hard": hard}
    transports = tuple(args.transports) if args.transports else relay_transports()
    litellm, peer_error = None, None
    if args.peer == "litellm":
        args.out.parent.mkdir(parents=True, exist_ok=True)
        try:
            litellm = ensure_litellm(args.out.parent / "litellm-install.log")
        except PeerUnavailable as exc:
            peer_error = f"installing LiteLLM failed: {exc}"
            print(f"relay bench: {peer_error}; going on without it", file=sys.stderr, flush=True)
    # Everything but the servers under test (this coordinator, and through inheritance the emulator and the load
    # generators) runs on the "others" CPUs; restored afterwards, in case we run inside another program.
    original = os.sched_getaffinity(0) if pinning.active else None
    error = pin(0, pinning.others)
    if error:
        pin_notes.append(f"PINNING FAILED: {error}")
    # A fresh key per run, given to the relay through RELAY_MASTER_KEY: the relay runs authenticated, as deployed.
    key = "sk-bench-" + secrets.token_hex(12)
    started = datetime.now(UTC)
    t0 = time.monotonic()
    results: list[ScenarioResult] = []
    failures: list[str] = []
    try:
        # Before the run: the probe wants the pinned CPU while it is still idle, and the busy time of every CPU
        # meanwhile tells whether something else is running on a machine that should be quiet.
        before = cpu_times()
        machine["wakeup_lateness_ms"] = wake = wakeup_lateness()
        background = {cpu: busy_percent(before, cpu_times(), frozenset([cpu])) for cpu in sorted(before)}
        machine["background_busy_percent"] = background
        noisy = any(b is not None and b > _BUSY for b in background.values())
        if noisy:
            print(f"relay bench: WARNING the machine is busy before the run ({_busy_text(background)}); "
                  "results will be noisy", file=sys.stderr)
        # As many generator processes as the largest job wants (they share the load CPU; spawning costs ~0.3 s each).
        wanted = max(getattr(m, "generators", lambda a: 1)(_defaults(m, args) if args.scenario == "all" else args)
                     for m in modules)
        with Lab(key, pinning, relay_transports=transports, litellm=litellm) as lab:
            ctx = Context(lab, GeneratorPool(min(_POOL, wanted), pinning.others), pinning,
                          peer_requested=args.peer == "litellm", peer_error=peer_error)
            try:
                for module in modules:
                    scenario_args = _defaults(module, args) if args.scenario == "all" else args
                    lab.fresh_upstream(getattr(module, "UPSTREAM", "emulator"))
                    ctx.progress(f"{module.NAME}: starting ({time.monotonic() - t0:.0f} s into the run)")
                    try:
                        results.append(module.run(scenario_args, ctx))
                    except Exception as exc:
                        if args.scenario != "all":
                            raise
                        ctx.progress(f"{module.NAME}: FAILED: {exc!r}")
                        ctx.reset_pool()
                        results.append(_failed(module, exc))
                        failures.append(module.NAME)
            finally:
                ctx.pool.close()  # the one in use: a failed job replaces the pool
            failures += ctx.failures
            pin_notes += lab.notes
            emulator_transport = lab.emulator_transport
            upstreams = _upstreams_text(lab.kinds_used, emulator_transport, modules)
            upstreams += "; the load generators" + (" and the echo upstream" if "echo" in lab.kinds_used else "")
    finally:
        if original is not None:
            pin(0, frozenset(original))
    if args.scenario == "all":
        results.insert(0, targets.evaluate(results, peer_requested=args.peer == "litellm", peer_error=peer_error))
    elapsed = time.monotonic() - t0
    command = shlex.join(["python", "-m", "bench", *argv])
    header = {
        "date": started.strftime("%Y-%m-%d %H:%M UTC") + f" ({elapsed / 60:.1f} min)",
        "command": f"`{command}`",
        "machine": f"{machine['cpu']}, {machine['cores']} cores ({machine['usable_cores']} usable), "
                   f"{machine['memory']}, {machine['kernel']}; open files limit {soft} (hard {hard})",
        "pinning": "; ".join(pin_notes),
        "servers under test": f"relay transports: {', '.join(transports)}; "
                              + (f"LiteLLM {peer_error or '1.106.2'}" if args.peer else "no LiteLLM (--peer litellm)"),
        "upstream and load side": f"{upstreams} run on {loops.name()}",
        "timer wakeup lateness": f"p50 {wake['p50']:.2f} ms, p99 {wake['p99']:.2f} ms, max {wake['max']:.2f} ms "
                                 "(time.sleep(20 ms) x 50 on an idle CPU: a floor under the latencies below)",
        "background load": f"{_busy_text(background)} busy before the run"
                           + (" (**not idle: expect noisy figures**)" if noisy else ""),
        "software": f"{machine['python']}; " + ", ".join(f"{k} {v}" for k, v in machine["packages"].items()),
        "relay commit": machine["git"],
    }
    meta = {"date": started.isoformat(), "elapsed_s": elapsed, "command": command, "machine": machine,
            "pinning": pin_notes, "transports": list(transports), "emulator_transport": emulator_transport,
            "load_loop": loops.name(),
            "peer": args.peer, "peer_error": peer_error, "failures": failures}
    markdown, json_path = write(args.out, header, meta, results)
    print(markdown, end="")
    print(f"written: {args.out}, {json_path} ({elapsed / 60:.1f} min)", file=sys.stderr)
    if failures:
        print(f"relay bench: FAILED: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0
