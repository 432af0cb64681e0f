"""Deterministic Gemini Live emulator: the relay's test, demo and benchmark upstream.

See :mod:`relay.emulator.server` for the protocol it speaks and the ``[fault:...]`` triggers.
Run it standalone with ``python -m relay.emulator --port 8765``.
"""

from .server import Emulator, EmulatorOptions, run_emulator

__all__ = ["Emulator", "EmulatorOptions", "run_emulator"]
