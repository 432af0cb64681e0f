"""Function calling (protocols.md 1.9 D, 3.3-3.5, section 4 pitfalls 4-8).

Gemini sends `toolCall` and then waits, without `turnComplete`, for a `toolResponse`; after it, the
model continues by itself.  OpenAI clients expect the calls as output items of a response that ends,
then send `function_call_output` items and a `response.create`.  The relay ends the response right
after the calls, gathers the outputs of one tool turn into one `toolResponse`, and lets the client's
`response.create` adopt the continuation instead of asking Gemini for a second generation.
"""

from __future__ import annotations

import logging
from typing import Any

import attrs
import orjson

from relay.events import gemini as gm
from relay.events import openai as oa
from relay.translate.schema import to_gemini_schema

log = logging.getLogger("relay.translate")

WITHDRAWN_KEPT = 64  # ids of withdrawn calls remembered after their tool turn ended


@attrs.define
class Call:
    name: str
    gemini_id: str | None
    cancelled: bool = False
    answered: bool = False


class ToolState:
    def __init__(self) -> None:
        self.calls: dict[str, Call] = {}  # call_id → call
        self.turn_calls: list[str] = []  # calls of the latest tool turn, in Gemini's order
        self.turn_keys: set[str] = set()  # to drop duplicate calls within a turn (pitfall 7)
        self.outputs: dict[str, dict[str, Any]] = {}  # call_id → functionResponse, not yet sent
        # Calls Gemini withdrew, of tool turns already over: a late output for one is still ignored rather than
        # sent as history.  Bounded (oldest dropped), as the calls of finished turns are forgotten.
        self.withdrawn: dict[str, None] = {}
        self.awaiting_continuation = False  # toolResponse sent, Gemini's answer not started
        # The client's response.create after its outputs belongs to Gemini's continuation, whether
        # that has not started, is streaming, or already finished: it must not start another.
        self.create_absorbed = False


def function_response(call: Call, output: str | None, send_id: bool) -> dict[str, Any]:
    """A `functionResponses[]` entry: Gemini wants `name` and an object (1007 otherwise)."""
    try:
        value: Any = orjson.loads(output) if output else ""
    except orjson.JSONDecodeError:
        value = output
    body = value if isinstance(value, dict) else {"output": value}
    entry: dict[str, Any] = {"name": call.name, "response": body}
    if send_id and call.gemini_id:
        entry["id"] = call.gemini_id
    return entry


class ToolCalls:
    """Mixin of `Translator`: Gemini tool calls out, function_call_output items in."""

    def _tool_call(self, tc: gm.ToolCall) -> None:
        calls = tc.function_calls or []
        if not calls:
            return
        r = self._active_for_output()
        if r is None:
            return  # the turn was cancelled; its calls are dropped with it
        tools = self._tools
        for fc in calls:
            name = fc.name or ""
            args = orjson.dumps(fc.args or {}).decode()
            key = fc.id or f"{name}:{args}"
            if key in tools.turn_keys:
                log.info("duplicate function call %s dropped", key)
                continue
            tools.turn_keys.add(key)
            call_id = fc.id if fc.id and fc.id not in tools.calls else self._ids("call_")
            tools.calls[call_id] = Call(name=name, gemini_id=fc.id)
            tools.turn_calls.append(call_id)
            r.function_call(call_id, name, args)
        # Gemini sends no turnComplete until it has the tool response: the response ends here, and
        # a stray turnComplete some models still send must not end the next one.
        self._finish_response("completed")
        self._swallow_turn_complete = True

    def _tool_call_cancellation(self, cancel: gm.ToolCallCancellation) -> None:
        tools = self._tools
        for gemini_id in cancel.ids or ():
            for call_id, call in tools.calls.items():
                if call.gemini_id == gemini_id and not call.answered:
                    call.cancelled = True
                    tools.outputs.pop(call_id, None)
                    log.info("function call %s cancelled by Gemini", call_id)
        self._flush_tool_outputs(force=False)
        if tools.turn_calls and not tools.outputs and not self._waiting_calls():
            self._end_tool_turn()  # every call withdrawn, nothing to send: the tool turn is over

    def _waiting_calls(self) -> list[str]:
        tools = self._tools
        return [c for c in tools.turn_calls if not tools.calls[c].cancelled and not tools.calls[c].answered]

    def _end_tool_turn(self) -> None:
        """Forget the calls of a tool turn that is over, so that a long session's state does not grow with them."""
        tools = self._tools
        for call_id in tools.turn_calls:
            call = tools.calls.pop(call_id, None)
            if call is not None and call.cancelled:
                tools.withdrawn[call_id] = None
        while len(tools.withdrawn) > WITHDRAWN_KEPT:
            del tools.withdrawn[next(iter(tools.withdrawn))]
        tools.turn_calls.clear()
        tools.turn_keys.clear()

    def _function_call_output(self, item: oa.Item) -> bool:
        """A live answer to one of Gemini's calls (True), or history for the next turn (False)."""
        tools = self._tools
        if item.call_id in tools.withdrawn:
            log.warning("output for cancelled function call %s ignored", item.call_id)
            return True
        call = tools.calls.get(item.call_id or "")
        if call is None or call.answered:
            return False
        item.name = call.name  # kept for replay after an upstream fault
        if call.cancelled:
            log.warning("output for cancelled function call %s ignored", item.call_id)
            return True
        call.answered = True
        tools.outputs[item.call_id] = function_response(call, item.output, self._caps.function_response_id)
        self._flush_tool_outputs(force=False)
        return True

    def _flush_tool_outputs(self, force: bool) -> None:
        """Send the tool turn's outputs as one toolResponse once every live call has one (or when
        the client asks for a response anyway)."""
        tools = self._tools
        waiting = self._waiting_calls()
        if not tools.outputs or (waiting and not force):
            return
        responses = [tools.outputs[c] for c in tools.turn_calls if c in tools.outputs]
        tools.outputs.clear()
        if not waiting:
            self._end_tool_turn()
        self._ensure_upstream()
        self._send_upstream({"toolResponse": {"functionResponses": responses}})
        tools.awaiting_continuation = True
        tools.create_absorbed = True

    def _adopt_continuation(self, params: dict[str, Any]) -> bool:
        """response.create after tool outputs: Gemini is already answering, so this response is
        the continuation (True) rather than a new generation."""
        tools = self._tools
        self._flush_tool_outputs(force=True)
        if not tools.create_absorbed:
            return False
        tools.create_absorbed = False  # only the first create after the outputs is the continuation's
        if self._pending_turns:
            return False  # it brings a turn of its own: a new generation, which Gemini's continuation joins
        active = self._responding
        if tools.awaiting_continuation and not active:
            self._start_response(params, send=False)
        # else the continuation already streams into a response, or has finished in one: nothing more to start
        tools.awaiting_continuation = False
        return True

    def _continuation_started(self) -> None:
        """Gemini's output after a toolResponse arrived before any response.create."""
        self._tools.awaiting_continuation = False

    def _continuation_ended(self) -> None:
        """Gemini ended its turn (turnComplete, interrupted) with no output after a toolResponse: a later
        response.create asks for a new generation instead of waiting for a continuation that will not come."""
        tools = self._tools
        if tools.awaiting_continuation:
            tools.awaiting_continuation = tools.create_absorbed = False


def declarations(tools: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """Gemini functionDeclarations for OpenAI session tools, and warnings for what was left out."""
    out: list[dict[str, Any]] = []
    warnings: list[str] = []
    for tool in tools:
        if tool.get("type") == "google_search":
            continue  # not a function: build_setup adds Gemini's googleSearch tool for it
        if tool.get("type", "function") != "function" or not isinstance(tool.get("name"), str):
            warnings.append(f"tool of type {tool.get('type')!r} is not supported and was left out")
            continue
        decl: dict[str, Any] = {"name": tool["name"]}
        if isinstance(tool.get("description"), str):
            decl["description"] = tool["description"]
        if tool.get("parameters") is not None:
            params, dropped = to_gemini_schema(tool["parameters"])
            if params.get("properties") or params.get("type") != "OBJECT":
                decl["parameters"] = params
            if dropped:
                warnings.append(f"tool {tool['name']}: JSON Schema keywords Gemini does not take were left out: "
                                + ", ".join(sorted(dropped)))
        out.append(decl)
    return out, warnings
