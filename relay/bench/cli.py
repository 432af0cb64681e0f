"""`python -m relay bench SCENARIO [options]`: run one scenario, write markdown and JSON, print the markdown.

A scenario is a module with NAME, HELP, `add_arguments(parser)` and `run(args, *, key, pinning)` returning
a `ScenarioResult`; adding one is adding it to SCENARIOS.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

from relay.bench import audio
from relay.bench.machine import facts, wakeup_lateness
from relay.bench.procs import busy_percent, cpu_times, pin, plan_pinning
from relay.bench.report import write

SCENARIOS: dict[str, ModuleType] = {module.NAME: module for module in (audio,)}
DEFAULT_OUT = Path("bench/results.md")
_BUSY = 10.0  # % of a CPU in use before the run that makes it a noisy machine


def _busy_text(background: dict[int, float | None]) -> str:
    return ", ".join(f"CPU{cpu} {b:.0f} %" if b is not None else f"CPU{cpu} n/a" for cpu, b in background.items())


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Benchmarks of the relay against the emulator.")
    sub = parser.add_subparsers(dest="scenario", required=True, metavar="SCENARIO")
    for module in SCENARIOS.values():
        scenario = sub.add_parser(module.NAME, help=module.HELP, description=module.__doc__)
        module.add_arguments(scenario)
        scenario.add_argument("--out", type=Path, default=DEFAULT_OUT,
                              help=f"markdown report; the JSON goes beside it (default: {DEFAULT_OUT})")
    return parser


def main(argv: list[str] | None = None, prog: str = "python -m relay.bench") -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser(prog).parse_args(argv)
    module = SCENARIOS[args.scenario]
    machine = facts()  # before pinning narrows what this process sees
    pinning = plan_pinning()
    pin_notes = [pinning.note]
    # Everything but the relay (this coordinator, and through inheritance the emulator and the load
    # generators) runs on the "others" CPUs; restored afterwards, in case we run inside another program.
    original = os.sched_getaffinity(0) if pinning.active else None
    error = pin(0, pinning.others)
    if error:
        pin_notes.append(f"PINNING FAILED: {error}")
    # A fresh key per run, given to the relay through RELAY_MASTER_KEY: the relay runs authenticated, as deployed.
    key = "sk-bench-" + secrets.token_hex(12)
    started = datetime.now(UTC)
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
        result = module.run(args, key=key, pinning=pinning)
    finally:
        if original is not None:
            pin(0, frozenset(original))
    command = shlex.join(["python", "-m", "relay", "bench", *argv])
    header = {
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "command": f"`{command}`",
        "machine": f"{machine['cpu']}, {machine['cores']} cores ({machine['usable_cores']} usable), "
                   f"{machine['memory']}, {machine['kernel']}",
        "pinning": "; ".join(pin_notes),
        "timer wakeup lateness": f"p50 {wake['p50']:.2f} ms, p99 {wake['p99']:.2f} ms, max {wake['max']:.2f} ms "
                                 "(time.sleep(20 ms) x 50 on an idle CPU: a floor under the latencies below)",
        "background load": f"{_busy_text(background)} busy before the run"
                           + (" (**not idle: expect noisy figures**)" if noisy else ""),
        "software": f"{machine['python']}; " + ", ".join(f"{k} {v}" for k, v in machine["packages"].items()),
        "relay commit": machine["git"],
    }
    meta = {"date": started.isoformat(), "command": command, "machine": machine, "pinning": pin_notes}
    markdown, json_path = write(args.out, header, meta, [result])
    print(markdown, end="")
    print(f"written: {args.out}, {json_path}", file=sys.stderr)
    return 0
