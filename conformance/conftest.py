"""Hypothesis profiles for the conformance suite (the same ones tests/conftest.py registers).

Pick one with HYPOTHESIS_PROFILE=dev|ci|long (default dev).
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", max_examples=200, deadline=None)
settings.register_profile("dev", max_examples=50, deadline=None)
settings.register_profile("long", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
