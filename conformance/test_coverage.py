"""Every event type and Gemini field is accounted for (conformance/coverage.py), and each status holds."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import attrs
import orjson
import pytest

from conformance import coverage as cov
from relay.events import gemini as gm
from relay.events import openai as oa
from relay.ids import counting_ids
from relay.models import caps_for
from relay.translate.translator import Translator

EVENTS = cov.sdk_events()
FIELDS = cov.sdk_gemini_fields()
SOURCE = "\n".join(p.read_text() for p in (Path(cov.__file__).parent.parent / "relay" / "translate").glob("*.py"))


def _relay_wire(dialect: str) -> set[str]:
    index = 0 if dialect == "beta" else 1
    return {cls.WIRE[index] for cls in vars(oa).values()
            if isinstance(cls, type) and hasattr(cls, "WIRE") and cls.WIRE[index] is not None}


def _unlisted(sdk: set[str], listed: dict[str, Any], what: str) -> None:
    missing = sorted(sdk - listed.keys())
    stale = sorted(listed.keys() - sdk)
    assert not missing, f"{what} the SDK has and conformance/coverage.py does not list: {missing}"
    assert not stale, f"{what} conformance/coverage.py lists and the SDK no longer has: {stale}"


def test_every_client_event_type_is_listed() -> None:
    _unlisted(EVENTS["client"]["beta"] | EVENTS["client"]["ga"], cov.CLIENT, "client event types")


def test_every_server_event_type_is_listed() -> None:
    _unlisted(EVENTS["server"]["beta"] | EVENTS["server"]["ga"], cov.SERVER, "server event types")


def test_every_translation_socket_event_type_is_listed() -> None:
    _unlisted(cov.sdk_translation_events(), cov.TRANSLATION, "translation socket event types")


def test_every_gemini_field_is_listed() -> None:
    _unlisted(FIELDS["in"], cov.GEMINI_IN, "LiveServerMessage fields")
    _unlisted(FIELDS["out"], cov.GEMINI_OUT, "LiveClientMessage fields")


def test_server_statuses_match_what_the_relay_can_emit() -> None:
    wire = _relay_wire("beta") | _relay_wire("ga")
    for name, (status, _) in cov.SERVER.items():
        assert status in (cov.MAPPED, cov.SYNTHESIZED, cov.NOT_SENT), name
        assert (name in wire) == (status != cov.NOT_SENT), f"{name}: listed {status!r}"
    for dialect in ("beta", "ga"):
        foreign = _relay_wire(dialect) - EVENTS["server"][dialect] - cov.OUTSIDE_SDK.keys()
        assert not foreign, f"the relay emits event types the {dialect} SDK does not know: {foreign}"
    assert not cov.OUTSIDE_SDK.keys() & (EVENTS["server"]["beta"] | EVENTS["server"]["ga"]), \
        "an event listed as outside the SDK is in it now: list it in SERVER"


def _translator() -> Translator:
    t = Translator(counting_ids(), caps_for("gemini-2.0-flash-live-preview-04-09"), dialect="ga")
    t.start()
    return t


def _errors(out: Any) -> list[dict[str, Any]]:
    return [e["error"] for e in map(orjson.loads, out.client) if e["type"] == "error"]


MINIMAL: dict[str, dict[str, Any]] = {  # the smallest valid event of each type
    "session.update": {"session": {"type": "realtime", "instructions": "hi"}},
    "transcription_session.update": {"session": {}},
    "input_audio_buffer.append": {"audio": "AAAA"},
    "conversation.item.create": {"item": {"type": "message", "role": "user",
                                          "content": [{"type": "input_text", "text": "hi"}]}},
    "conversation.item.retrieve": {"item_id": "missing"},
    "conversation.item.truncate": {"item_id": "missing", "content_index": 0, "audio_end_ms": 0},
    "conversation.item.delete": {"item_id": "missing"},
}


@pytest.mark.parametrize("name", list(cov.CLIENT))
def test_client_statuses_hold(name: str) -> None:
    status, what = cov.CLIENT[name]
    assert name in oa.CLIENT_EVENTS, f"{name}: the relay has no event class for it"
    errors = _errors(_translator().client_frame(orjson.dumps({"type": name, **MINIMAL.get(name, {})})))
    codes = [e["code"] for e in errors]
    if status == cov.REJECTED:
        assert codes == [what.split(":", 1)[0]], f"{name}: listed {what!r}, got {codes}"
    elif status == cov.ACCEPTED:
        assert not errors, f"{name}: listed as accepted, got {codes}"
    else:
        assert status in (cov.MAPPED, cov.SYNTHESIZED), name
        # Only a missing item (the minimal events name none) or a too-short buffer may refuse these.
        assert set(codes) <= {"item_not_found", "input_audio_buffer_commit_empty", "response_cancel_not_active"}, \
            f"{name}: {codes}"


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.title() for word in rest)


def test_gemini_statuses_hold() -> None:
    parsed = {f.name for f in attrs.fields(gm.ServerMessage)}
    parsed |= {"server_content." + f.name for f in attrs.fields(gm.ServerContent)}
    for name, (status, _) in cov.GEMINI_IN.items():
        assert status in (cov.USED, cov.IGNORED), name
        if status == cov.USED:
            assert name in parsed, f"{name} is listed as used and the relay does not even parse it"
    for name, (status, _) in cov.GEMINI_OUT.items():
        assert status in (cov.SENT, cov.NEVER), name
        key = _camel(name.rsplit(".", 1)[-1])
        built = re.search(r'[{,]\s*"' + key + r'"\s*:', SOURCE) is not None or (
            name == "realtime_input.video" and '"video"' in SOURCE)
        assert built == (status == cov.SENT), f"{name} is listed {status!r}; the translator builds {key}: {built}"


def test_the_readme_shows_the_generated_tables() -> None:
    part = cov.readme_part(cov.README.read_text())
    assert part is not None, "README.md lost its generated events block"
    assert part == cov.tables(), "README.md's events tables are stale: run `python -m conformance.coverage --write`"
