"""`idle_timeout_ms` (GA server VAD): after a response, a user who says nothing for that long is prompted.

OpenAI's server commits the silent audio as a user item, says `input_audio_buffer.timeout_triggered` and
responds.  Gemini has no such timer, and the relay hears no speech itself (Gemini's VAD does), so the relay
keeps the timer: armed when a response ends, disarmed by anything the user does, including audio loud enough
to be speech.  The shell runs the clock (`idle_timeout_ms`, `idle_epoch`) and calls `idle_timeout` when it
fires; the translator stays free of clocks.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy as np

from relay.events import openai as oa

# RMS of 16-bit PCM above which an appended chunk counts as speech (about -36 dBFS; the emulator's VAD uses 500).
SPEECH_RMS = 500.0


def loud(chunk_b64: str) -> bool:
    """Whether a PCM16 chunk (base64, as sent to Gemini) is loud enough to be speech."""
    try:
        pcm = np.frombuffer(base64.b64decode(chunk_b64), dtype="<i2")
    except (binascii.Error, ValueError):
        return False
    if pcm.size == 0:
        return False
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) > SPEECH_RMS


class IdleTimer:
    """Mixin of `Translator`: the `idle_timeout_ms` bookkeeping."""

    def _init_idle(self) -> None:
        self.idle_armed = False  # a response ended and the user has done nothing since
        self.idle_epoch = 0  # grows each time the timer is armed, so the shell restarts its clock
        self._idle_start_ms = 0.0

    @property
    def idle_timeout_ms(self) -> float | None:
        """How long the shell's timer runs from its arming (`idle_epoch`), or None when no timer runs."""
        if not self.idle_armed or self._response is not None or self.awaiting_model or self._tools.turn_calls:
            return None  # not after a tool call: the client owes its output, not the user
        return self._idle_setting()

    def _idle_setting(self) -> float | None:
        td = self.session.turn_detection
        ms = td.get("idle_timeout_ms") if isinstance(td, dict) and td.get("type") == "server_vad" else None
        if isinstance(ms, bool) or not isinstance(ms, int | float) or ms <= 0:
            return None
        return float(ms)

    def _idle_arm(self) -> None:
        if self._idle_setting() is None:
            return  # only sessions that asked for the timer pay for it (appends are checked for speech while armed)
        self.idle_armed = True
        self.idle_epoch += 1
        self._idle_start_ms = self._audio.total_ms

    def _idle_disarm(self) -> None:
        self.idle_armed = False

    def _idle_heard(self, chunks: list[str]) -> None:
        if self.idle_armed and any(loud(c) for c in chunks):
            self.idle_armed = False

    def idle_timeout(self, epoch: int) -> Any:
        """The shell's timer for `epoch` ran out: commit the silent audio, say so, and ask for a response."""
        if epoch == self.idle_epoch and self.idle_timeout_ms is not None and not self._manual_turns():
            self.idle_armed = False
            a = self._audio
            item_id = self._items.new_id(self._ids)
            self._emit(oa.InputAudioBufferTimeoutTriggered(int(self._idle_start_ms), int(a.total_ms), item_id))
            self._commit_audio_item(item_id)
            self._ensure_upstream()
            # Gemini heard no turn in the silence: clientContent with turnComplete alone asks it to go on.
            self._start_response({}, send=True)
        return self._take()
