"""Function calling through the sans-IO translator: Gemini toolCall ⇄ OpenAI function_call items."""

from __future__ import annotations

import orjson
import pytest

from relay.ids import counting_ids
from relay.models import caps_for
from relay.translate import Translator
from tests.schemas import validate_gemini, validate_openai

WEATHER = {
    "type": "function", "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                    "unit": {"type": ["string", "null"], "enum": ["c", "f", None]}},
                   "required": ["city"], "additionalProperties": False},
}
TIME = {"type": "function", "name": "get_time", "parameters": {"type": "object", "properties": {}}}


class Session:
    def __init__(self, dialect: str, model: str = "gemini-2.0-flash-live-preview-04-09", backend: str = "vertex"):
        self.t = Translator(counting_ids(), caps_for(model, backend), dialect=dialect)
        self.dialect = dialect
        self.upstream: list[dict] = []
        self.setup: dict | None = None
        self._take(self.t.start())

    def _take(self, out) -> list[dict]:
        if out.connect is not None:
            self.setup = out.connect.setup
            model = "projects/p/locations/l/publishers/google/models/m"
            validate_gemini({"setup": {**out.connect.setup["setup"], "model": model}})
        for m in out.upstream:
            validate_gemini(m)
        self.upstream += out.upstream
        events = [orjson.loads(f) for f in out.client]
        for e in events:
            validate_openai(e, self.dialect)
        return events

    def send(self, ev: dict) -> list[dict]:
        return self._take(self.t.client_frame(orjson.dumps(ev)))

    def gemini(self, msg: dict) -> list[dict]:
        return self._take(self.t.upstream_frame(orjson.dumps(msg)))


def names(events):
    return [e["type"] for e in events]


@pytest.mark.parametrize("dialect", ["beta", "ga"])
def test_two_parallel_calls_then_outputs_then_continuation(dialect):
    s = Session(dialect)
    if dialect == "ga":
        s.send({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"],
                                                       "tools": [WEATHER, TIME]}})
    else:
        s.send({"type": "session.update", "session": {"modalities": ["text"], "tools": [WEATHER, TIME]}})
    s.send({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
            "content": [{"type": "input_text", "text": "weather in Paris and the time?"}]}})
    s.send({"type": "response.create"})
    decl = s.setup["setup"]["tools"][0]["functionDeclarations"]
    assert decl[0]["parameters"] == {"type": "OBJECT", "properties": {
        "city": {"type": "STRING"}, "unit": {"type": "STRING", "enum": ["c", "f"], "nullable": True}},
        "required": ["city"]}
    assert decl[1] == {"name": "get_time"}
    s.gemini({"setupComplete": {}})
    events = s.gemini({"toolCall": {"functionCalls": [
        {"id": "fc-1", "name": "get_weather", "args": {"city": "Paris"}},
        {"id": "fc-2", "name": "get_time", "args": {}},
        {"id": "fc-1", "name": "get_weather", "args": {"city": "Paris"}},  # duplicate: dropped
    ]}})
    one_call = ["response.output_item.added", "conversation.item.added", "response.function_call_arguments.delta",
                "response.function_call_arguments.done", "response.output_item.done", "conversation.item.done"]
    if dialect == "beta":
        one_call = [n.replace("conversation.item.added", "conversation.item.created") for n in one_call
                    if n != "conversation.item.done"]
    assert names(events) == one_call * 2 + ["response.done"]
    done = events[-1]["response"]
    assert [(o["call_id"], o["name"], o["arguments"]) for o in done["output"]] == [
        ("fc-1", "get_weather", '{"city":"Paris"}'), ("fc-2", "get_time", "{}")]
    assert events[3]["name"] == "get_weather"
    sent = len(s.upstream)
    s.send({"type": "conversation.item.create", "item": {"type": "function_call_output", "call_id": "fc-1",
                                                         "output": '{"temp": 21}'}})
    assert len(s.upstream) == sent, "outputs of one tool turn go up together"
    s.send({"type": "conversation.item.create", "item": {"type": "function_call_output", "call_id": "fc-2",
                                                         "output": "12:00"}})
    # Vertex: no id (it has rejected it); a non-object output is wrapped
    assert s.upstream[-1] == {"toolResponse": {"functionResponses": [
        {"name": "get_weather", "response": {"temp": 21}},
        {"name": "get_time", "response": {"output": "12:00"}}]}}
    created = s.send({"type": "response.create"})
    assert names(created) == ["response.created"]
    assert len(s.upstream) == sent + 1, "Gemini continues by itself: no second generation"
    s.gemini({"serverContent": {"turnComplete": True}})  # a stray turnComplete some models send
    out = s.gemini({"serverContent": {"modelTurn": {"parts": [{"text": "21 degrees at noon"}]}}})
    out += s.gemini({"serverContent": {"turnComplete": True}})
    assert out[-1]["type"] == "response.done" and out[-1]["response"]["id"] == created[0]["response"]["id"]
    assert out[-1]["response"]["status"] == "completed"


def test_continuation_before_response_create_is_adopted_and_ai_studio_sends_ids():
    s = Session("ga", model="gemini-live-2.5-flash-preview", backend="gemini")
    s.send({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"], "tools": [TIME]}})
    s.send({"type": "input_text", "text": "time?"})
    s.gemini({"setupComplete": {}})
    s.gemini({"toolCall": {"functionCalls": [{"id": "fc-9", "name": "get_time", "args": {}}]}})
    s.send({"type": "conversation.item.create", "item": {"type": "function_call_output", "call_id": "fc-9",
                                                         "output": '"noon"'}})
    assert s.upstream[-1] == {"toolResponse": {"functionResponses": [
        {"name": "get_time", "response": {"output": "noon"}, "id": "fc-9"}]}}
    early = s.gemini({"serverContent": {"modelTurn": {"parts": [{"text": "It is noon."}]}}})
    assert early[0]["type"] == "response.created"
    assert s.send({"type": "response.create"}) == [], "the continuation already answers it"
    done = s.gemini({"serverContent": {"turnComplete": True}})
    assert done[-1]["type"] == "response.done"


def test_cancelled_call_output_is_ignored_and_unknown_call_is_an_error():
    s = Session("beta")
    s.send({"type": "session.update", "session": {"modalities": ["text"], "tools": [TIME]}})
    s.send({"type": "input_text", "text": "time?"})
    s.gemini({"setupComplete": {}})
    s.gemini({"toolCall": {"functionCalls": [{"id": "fc-1", "name": "get_time", "args": {}}]}})
    s.gemini({"toolCallCancellation": {"ids": ["fc-1"]}})
    sent = len(s.upstream)
    ack = s.send({"type": "conversation.item.create", "item": {"type": "function_call_output", "call_id": "fc-1",
                                                               "output": "late"}})
    assert names(ack) == ["conversation.item.created"]
    assert len(s.upstream) == sent
    err = s.send({"type": "conversation.item.create", "event_id": "x",
                  "item": {"type": "function_call_output", "call_id": "nobody", "output": "?"}})
    assert err[0]["error"]["param"] == "item.call_id" and err[0]["error"]["event_id"] == "x"


def test_tool_choice_none_omits_tools_and_history_calls_become_turns():
    s = Session("beta")
    s.send({"type": "session.update", "session": {"modalities": ["text"], "tools": [TIME], "tool_choice": "none"}})
    s.send({"type": "conversation.item.create", "item": {"type": "function_call", "call_id": "h1",
                                                         "name": "get_time", "arguments": '{"tz": "UTC"}'}})
    s.send({"type": "conversation.item.create", "item": {"type": "function_call_output", "call_id": "h1",
                                                         "output": "noon"}})
    s.send({"type": "input_text", "text": "and now?"})
    assert "tools" not in s.setup["setup"]
    s.gemini({"setupComplete": {}})
    turns = s.upstream[-1]["clientContent"]["turns"]
    assert turns[0] == {"role": "model", "parts": [{"functionCall": {"name": "get_time", "args": {"tz": "UTC"}}}]}
    assert turns[1] == {"role": "user", "parts": [{"functionResponse": {"name": "get_time",
                                                                        "response": {"output": "noon"}}}]}
