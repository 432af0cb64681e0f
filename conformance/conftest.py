"""Hypothesis profiles for the conformance suite (the same ones tests/conftest.py registers).

Pick one with HYPOTHESIS_PROFILE=dev|ci|long (default dev).
"""

from __future__ import annotations

import os

from hypothesis import settings

# stateful_step_count: the steps of one state machine session (test_translator.py runs twice max_examples
# sessions): ci 400 sessions of up to 40 steps, long 4,000 of up to 100.
settings.register_profile("ci", max_examples=200, stateful_step_count=40, deadline=None)
settings.register_profile("dev", max_examples=50, stateful_step_count=40, deadline=None)
settings.register_profile("long", max_examples=2000, stateful_step_count=100, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def pytest_terminal_summary(terminalreporter: object, exitstatus: int, config: object) -> None:
    """`nox -s conformance` prints what the relay does with every event type and Gemini field."""
    from collections import Counter

    from conformance import coverage

    write = terminalreporter.write  # type: ignore[attr-defined]
    terminalreporter.write_sep("=", "event coverage (conformance/coverage.py)")  # type: ignore[attr-defined]
    write(coverage.tables())
    events, fields = coverage.sdk_events(), coverage.sdk_gemini_fields()
    sdk = {"client": events["client"]["beta"] | events["client"]["ga"],
           "server": events["server"]["beta"] | events["server"]["ga"], "gemini in": fields["in"],
           "gemini out": fields["out"], "translation": coverage.sdk_translation_events()}
    listed = {"client": coverage.CLIENT, "server": coverage.SERVER, "gemini in": coverage.GEMINI_IN,
              "gemini out": coverage.GEMINI_OUT, "translation": coverage.TRANSLATION}
    for kind, names in sdk.items():
        counts = Counter(listed[kind][n][0] for n in names if n in listed[kind])
        unlisted = len(names - listed[kind].keys())
        write(f"\n{kind}: {len(names)} in the SDKs, " + ", ".join(f"{v} {k}" for k, v in counts.items())
              + f"; unlisted: {unlisted}")
    write("\n")
