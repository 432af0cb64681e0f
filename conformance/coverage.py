"""Every event type and message field of both protocols, and what the relay does with it.

The lists come from the official SDKs at test time (the `openai` SDK's beta and GA event unions, the fields of
`google.genai.types.LiveServerMessage` / `LiveClientMessage` and their main parts); the statuses are written
here, one line each.  conformance/test_coverage.py fails on any type or field the SDKs have and this file does
not (a new SDK version adds one: the suite names it), on any entry the SDKs no longer have, and on a status the
relay does not live up to.  `python -m conformance.coverage` prints the tables; `--write` puts them in the
README's "Supported events" section, which a test keeps equal to them.
"""

from __future__ import annotations

import argparse
import re
import sys
import typing
from pathlib import Path
from typing import Any

MAPPED = "mapped"  # translated to the other protocol
SYNTHESIZED = "synthesized"  # made by the relay itself, from its own state or from Gemini's signals
ACCEPTED = "accepted"  # taken without an effect on Gemini (said why)
REJECTED = "rejected"  # answered with an `error` of the code named, the session goes on
NOT_SENT = "not sent"  # an OpenAI server event the relay never emits (said why)
SENT = "sent"  # a Gemini client message or field the relay sends
NEVER = "never sent"  # a Gemini client message or field the relay does not use (said why)
USED = "used"  # a Gemini server message or field the relay acts on
IGNORED = "ignored"  # a Gemini server field read past (said why)

# OpenAI client events: type -> (status, what happens; for REJECTED the error code first, then why).
CLIENT: dict[str, tuple[str, str]] = {
    "session.update": (MAPPED, "updates the effective session (beta flat or GA nested shape) and answers "
                       "`session.updated` with all of it; Gemini gets it in `setup`, by `contextUpdate` or at the "
                       "next turn boundary (see Long sessions); GA `type: \"transcription\"` makes or updates a "
                       "transcription session"),
    "transcription_session.update": (MAPPED, "beta: opens (on a session where nothing happened yet) or updates a "
                                     "transcription session; answered by `transcription_session.updated` (see "
                                     "Transcription sessions)"),
    "input_audio_buffer.append": (MAPPED, "`realtimeInput.audio` (see Audio)"),
    "input_audio_buffer.commit": (SYNTHESIZED, "`input_audio_buffer.committed` and the user item; in manual mode "
                                  "the turn ends (`activityEnd`) at `response.create`"),
    "input_audio_buffer.clear": (SYNTHESIZED, "`input_audio_buffer.cleared`; audio already streamed to Gemini "
                                 "cannot be taken back"),
    "output_audio_buffer.clear": (ACCEPTED, "nothing is buffered on a WebSocket (WebRTC/SIP only)"),
    "conversation.item.create": (MAPPED, "user/assistant/system text, `input_image` and `input_audio` join the next "
                                 "Gemini turn; `function_call_output` becomes a `toolResponse`, `function_call` "
                                 "history (see Tools)"),
    "conversation.item.retrieve": (SYNTHESIZED, "answered from the relay's local item store"),
    "conversation.item.truncate": (SYNTHESIZED, "`conversation.item.truncated`, cutting the stored assistant audio"),
    "conversation.item.delete": (SYNTHESIZED, "`conversation.item.deleted` from the local store (Gemini's context "
                                 "cannot be edited)"),
    "response.create": (MAPPED, "sends the pending turns to Gemini and streams the reply as a full response; "
                        "before any user input it is held for the first input; per-response `instructions` become "
                        "a note for that reply, fields Gemini fixes per connection get `unsupported_parameter` "
                        "(see Known limitations)"),
    "response.cancel": (SYNTHESIZED, "ends the response with `status: cancelled`; the rest of Gemini's turn is "
                        "dropped"),
}

# OpenAI server events: type -> (status, when or why not).  SENT-side names are checked against the relay's
# event classes (relay.events.openai WIRE names), per dialect.
SERVER: dict[str, tuple[str, str]] = {
    "session.created": (SYNTHESIZED, "on connect, before the first client event"),
    "session.updated": (SYNTHESIZED, "answers every `session.update`"),
    "conversation.created": (NOT_SENT, "one implicit conversation per session; clients do not wait for it"),
    "conversation.item.created": (SYNTHESIZED, "beta: each item stored (GA sends `.added` / `.done`)"),
    "conversation.item.added": (SYNTHESIZED, "GA: each item stored"),
    "conversation.item.done": (SYNTHESIZED, "GA: each item complete"),
    "conversation.item.retrieved": (SYNTHESIZED, "answers `conversation.item.retrieve`"),
    "conversation.item.deleted": (SYNTHESIZED, "answers `conversation.item.delete`"),
    "conversation.item.truncated": (SYNTHESIZED, "answers `conversation.item.truncate`"),
    "conversation.item.input_audio_transcription.delta": (MAPPED, "Gemini's `inputTranscription`"),
    "conversation.item.input_audio_transcription.completed": (MAPPED, "Gemini's `inputTranscription` finished, "
                                                              "with duration `usage`"),
    "conversation.item.input_audio_transcription.failed": (SYNTHESIZED, "transcription sessions: an utterance whose "
                                                           "Gemini connection ended before its transcript did"),
    "conversation.item.input_audio_transcription.segment": (NOT_SENT, "diarized segments: Gemini has none"),
    "input_audio_buffer.committed": (SYNTHESIZED, "on `commit`, or when Gemini takes a server-VAD turn"),
    "input_audio_buffer.cleared": (SYNTHESIZED, "answers `input_audio_buffer.clear`"),
    "input_audio_buffer.speech_started": (SYNTHESIZED, "server VAD: from Gemini's answer or interruption"),
    "input_audio_buffer.speech_stopped": (SYNTHESIZED, "server VAD: when Gemini takes the user's turn"),
    "input_audio_buffer.timeout_triggered": (SYNTHESIZED, "GA `idle_timeout_ms`: the relay's own timer"),
    "input_audio_buffer.dtmf_event_received": (NOT_SENT, "SIP calls only"),
    "output_audio_buffer.started": (NOT_SENT, "WebRTC/SIP only"),
    "output_audio_buffer.stopped": (NOT_SENT, "WebRTC/SIP only"),
    "output_audio_buffer.cleared": (NOT_SENT, "WebRTC/SIP only"),
    "rate_limits.updated": (NOT_SENT, "Gemini reports no rate limits on the socket"),
    "response.created": (MAPPED, "a response starts (the client's `response.create`, or Gemini's own under VAD)"),
    "response.done": (MAPPED, "Gemini's `turnComplete`, with `usage` from `usageMetadata`; also cancelled or "
                      "failed"),
    "response.output_item.added": (MAPPED, "each output item"),
    "response.output_item.done": (MAPPED, "each output item"),
    "response.content_part.added": (MAPPED, "each content part"),
    "response.content_part.done": (MAPPED, "each content part"),
    "response.text.delta": (MAPPED, "beta: Gemini's text parts"),
    "response.text.done": (MAPPED, "beta"),
    "response.output_text.delta": (MAPPED, "GA: Gemini's text parts"),
    "response.output_text.done": (MAPPED, "GA"),
    "response.audio.delta": (MAPPED, "beta: Gemini's audio (`inlineData`)"),
    "response.audio.done": (MAPPED, "beta"),
    "response.output_audio.delta": (MAPPED, "GA: Gemini's audio (`inlineData`)"),
    "response.output_audio.done": (MAPPED, "GA"),
    "response.audio_transcript.delta": (MAPPED, "beta: Gemini's `outputTranscription`"),
    "response.audio_transcript.done": (MAPPED, "beta"),
    "response.output_audio_transcript.delta": (MAPPED, "GA: Gemini's `outputTranscription`"),
    "response.output_audio_transcript.done": (MAPPED, "GA"),
    "response.function_call_arguments.delta": (MAPPED, "Gemini's `toolCall`, arguments in one delta"),
    "response.function_call_arguments.done": (MAPPED, "Gemini's `toolCall`"),
    "mcp_list_tools.in_progress": (NOT_SENT, "MCP tools are not offered: Gemini Live calls no remote MCP server"),
    "mcp_list_tools.completed": (NOT_SENT, "MCP tools are not offered"),
    "mcp_list_tools.failed": (NOT_SENT, "MCP tools are not offered"),
    "response.mcp_call.in_progress": (NOT_SENT, "MCP tools are not offered"),
    "response.mcp_call.completed": (NOT_SENT, "MCP tools are not offered"),
    "response.mcp_call.failed": (NOT_SENT, "MCP tools are not offered"),
    "response.mcp_call_arguments.delta": (NOT_SENT, "MCP tools are not offered"),
    "response.mcp_call_arguments.done": (NOT_SENT, "MCP tools are not offered"),
    "transcription_session.updated": (SYNTHESIZED, "beta: answers `transcription_session.update`"),
    "error": (SYNTHESIZED, "bad input, limits, upstream faults (see Errors)"),
}

# Gemini messages, as google.genai names their fields (snake_case); "serverContent.x" is a field of a part.
GEMINI_IN: dict[str, tuple[str, str]] = {
    "setup_complete": (USED, "input queued until then goes out"),
    "server_content": (USED, "the fields below"),
    "tool_call": (USED, "function call items"),
    "tool_call_cancellation": (USED, "the calls are dropped; their outputs are not sent"),
    "usage_metadata": (USED, "`response.done` usage"),
    "go_away": (USED, "a resume on a new connection at the next turn boundary"),
    "session_resumption_update": (USED, "the handle of the next resume"),
    "voice_activity_detection_signal": (IGNORED, "the relay times speech from Gemini's answer and transcription"),
    "voice_activity": (USED, "transcription sessions: `speech_started` / `speech_stopped` where Gemini sends it"),
    "server_content.model_turn": (USED, "text, audio and (skipped) thought parts"),
    "server_content.turn_complete": (USED, "`response.done`"),
    "server_content.interrupted": (USED, "barge-in: `speech_started`, the response ends"),
    "server_content.input_transcription": (USED, "input transcription events"),
    "server_content.output_transcription": (USED, "audio transcript events"),
    "server_content.turn_complete_reason": (USED, "the reason of an incomplete response"),
    "server_content.interaction_status": (USED, "models that report it: idle means a switch may happen"),
    "server_content.generation_complete": (IGNORED, "`turn_complete` ends the response"),
    "server_content.grounding_metadata": (IGNORED, "no OpenAI event carries it"),
    "server_content.url_context_metadata": (IGNORED, "no OpenAI event carries it"),
    "server_content.waiting_for_input": (IGNORED, "no OpenAI event carries it"),
    "server_content.interim_input_transcription": (IGNORED, "the final `input_transcription` is used"),
}

# Server events the relay sends that the SDK's unions lack, and why.
OUTSIDE_SDK: dict[str, str] = {
    "transcription_session.created": "beta: the first event of a transcription session (`?intent=transcription`), "
                                     "as OpenAI sends it (its OpenAPI spec has "
                                     "RealtimeBetaServerEventTranscriptionSessionCreated; the beta SDK union does "
                                     "not); its `session` validates as the SDK's `TranscriptionSession`",
}

# The translation socket (`/v1/realtime/translations`, `client.realtime.translations.connect()`): its own unions.
TRANSLATION: dict[str, tuple[str, str]] = {
    "session.update": (MAPPED, "`audio.output.language` becomes `translationConfig.targetLanguageCode` (a change "
                       "switches connections between segments), `audio.input.transcription` turns on Gemini's input "
                       "transcription; `noise_reduction` is kept and shown, Gemini has none"),
    "session.input_audio_buffer.append": (MAPPED, "`realtimeInput.audio`; refused until a language is set"),
    "session.close": (SYNTHESIZED, "`session.closed` once the segment being translated is done, then the socket "
                      "closes"),
    "session.created": (SYNTHESIZED, "on connect"),
    "session.updated": (SYNTHESIZED, "answers every `session.update`"),
    "session.closed": (SYNTHESIZED, "answers `session.close`"),
    "session.input_transcript.delta": (MAPPED, "Gemini's `inputTranscription`, when `audio.input.transcription` is "
                                       "set"),
    "session.output_transcript.delta": (MAPPED, "Gemini's `outputTranscription`"),
    "session.output_audio.delta": (MAPPED, "Gemini's audio, as 24 kHz pcm16 with `elapsed_ms` (output audio before "
                                   "the chunk)"),
    "error": (SYNTHESIZED, "bad input, a missing or unsupported language, upstream faults"),
}

GEMINI_OUT: dict[str, tuple[str, str]] = {
    "setup": (SENT, "from the effective session, with the first thing that needs the model"),
    "client_content": (SENT, "conversation turns, and the history replayed on a fresh connection"),
    "realtime_input": (SENT, "the fields below"),
    "tool_response": (SENT, "`function_call_output` items"),
    "context_update": (SENT, "a `session.update` of instructions or tools, where the model takes it"),
    "realtime_input.audio": (SENT, "input audio"),
    "realtime_input.activity_start": (SENT, "manual turns"),
    "realtime_input.activity_end": (SENT, "manual turns"),
    "realtime_input.video": (SENT, "images, on models that take them in realtime input (see Images)"),
    "realtime_input.media_chunks": (NEVER, "deprecated by Gemini for `audio` / `video`"),
    "realtime_input.audio_stream_end": (NEVER, "the relay keeps the stream open between turns"),
    "realtime_input.text": (SENT, "user text on models that take text as realtime input (3.x)"),
}


def _literal_types(union: Any) -> set[str]:
    """The `type` literals of a pydantic discriminated union of event models."""
    args = typing.get_args(union)
    if args and typing.get_origin(union) is typing.Annotated:
        args = typing.get_args(args[0])
    found: set[str] = set()
    for model in args:
        if typing.get_origin(model) is typing.Annotated:
            model = typing.get_args(model)[0]
        found.update(typing.get_args(model.model_fields["type"].annotation))
    return found


def sdk_events() -> dict[str, dict[str, set[str]]]:
    """{"client" | "server": {"beta" | "ga": event types}} from the installed `openai` SDK."""
    from openai.types import realtime as ga
    from openai.types.beta import realtime as beta

    return {
        "client": {"beta": _literal_types(beta.RealtimeClientEvent), "ga": _literal_types(ga.RealtimeClientEvent)},
        "server": {"beta": _literal_types(beta.RealtimeServerEvent), "ga": _literal_types(ga.RealtimeServerEvent)},
    }


def sdk_translation_events() -> set[str]:
    """Every event type of the translation socket's client and server unions, from the installed `openai` SDK."""
    from openai.types.realtime.realtime_translation_client_event import RealtimeTranslationClientEvent
    from openai.types.realtime.realtime_translation_server_event import RealtimeTranslationServerEvent

    return _literal_types(RealtimeTranslationClientEvent) | _literal_types(RealtimeTranslationServerEvent)


def sdk_gemini_fields() -> dict[str, set[str]]:
    """{"in" | "out": field names} from the installed google-genai, nested parts as "part.field"."""
    from google.genai import types as g

    def fields(cls: Any, prefix: str = "") -> set[str]:
        return {prefix + name for name in cls.model_fields}

    return {
        "in": fields(g.LiveServerMessage) | fields(g.LiveServerContent, "server_content."),
        "out": fields(g.LiveClientMessage) | fields(g.LiveClientRealtimeInput, "realtime_input."),
    }


def _dialects(name: str, kinds: dict[str, set[str]]) -> str:
    return " / ".join(d for d in ("beta", "ga") if name in kinds[d]).replace("ga", "GA") or "—"


def tables() -> str:
    """The README's generated part of "Supported events": four markdown tables."""
    events = sdk_events()
    out = ["Client → relay, every event type of the `openai` SDK's beta and GA unions:", "",
           "| event | dialects | status | what the relay does |", "|---|---|---|---|"]
    for name, (status, what) in CLIENT.items():
        shown = status if status != REJECTED else f"rejected (`{what.split(':', 1)[0]}`)"
        text = what if status != REJECTED else what.split(":", 1)[1].strip()
        out.append(f"| `{name}` | {_dialects(name, events['client'])} | {shown} | {text} |")
    out += ["", "Relay → client, every server event type of the same unions:", "",
            "| event | dialects | status | when, or why not |", "|---|---|---|---|"]
    for name, (status, what) in SERVER.items():
        out.append(f"| `{name}` | {_dialects(name, events['server'])} | {status} | {what} |")
    for name, what in OUTSIDE_SDK.items():
        out.append(f"| `{name}` | beta (not in the SDK's union) | {SYNTHESIZED} | {what} |")
    out += ["", "Gemini → relay, every field of `LiveServerMessage` and of its `server_content`:", "",
            "| field | status | what the relay does with it |", "|---|---|---|"]
    out += [f"| `{name}` | {status} | {what} |" for name, (status, what) in GEMINI_IN.items()]
    out += ["", "Relay → Gemini, every field of `LiveClientMessage` and of its `realtime_input`:", "",
            "| field | status | when, or why not |", "|---|---|---|"]
    out += [f"| `{name}` | {status} | {what} |" for name, (status, what) in GEMINI_OUT.items()]
    out += ["", "The translation socket, every event type of its client and server unions:", "",
            "| event | status | when, or why not |", "|---|---|---|"]
    out += [f"| `{name}` | {status} | {what} |" for name, (status, what) in TRANSLATION.items()]
    return "\n".join(out) + "\n"


README = Path(__file__).resolve().parent.parent / "README.md"
START = "<!-- events: generated by `python -m conformance.coverage --write`; edit conformance/coverage.py -->\n"
END = "<!-- events: end -->\n"


def readme_part(text: str) -> str | None:
    match = re.search(re.escape(START) + "(.*?)" + re.escape(END), text, re.S)
    return match.group(1) if match else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance.coverage", description=__doc__)
    parser.add_argument("--write", action="store_true", help="put the tables in README.md")
    args = parser.parse_args(argv)
    generated = tables()
    if not args.write:
        sys.stdout.write(generated)
        return 0
    text = README.read_text()
    if readme_part(text) is None:
        print(f"README.md has no {START.strip()} ... {END.strip()} block", file=sys.stderr)
        return 2
    README.write_text(re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: START + generated + END, text,
                             flags=re.S))
    return 0


if __name__ == "__main__":
    sys.exit(main())
