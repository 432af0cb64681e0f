"""Conversation items: create, retrieve, delete, truncate, kept in the local store (Gemini keeps no
addressable items) and turned into Gemini turns."""

from __future__ import annotations

import logging
from typing import Any

import orjson

from relay.errors import ClientError
from relay.events import openai as oa
from relay.translate.base import UPSTREAM_NONE
from relay.translate.media import audio_blob, image_blob
from relay.translate.tools import Call, function_response

log = logging.getLogger("relay.translate")


class Conversation:
    """Mixin of `Translator`: the handlers of item events (state lives in `Translator.__init__`)."""

    def _on_ConversationItemCreate(self, ev: oa.ConversationItemCreate) -> None:
        item = ev.item
        if item.type == "message":
            self._check_message(item)
            turn = turn_of(item)
            if item.role == "system" and self._upstream == UPSTREAM_NONE:
                # Before setup a system message can still join the system instruction.
                self._system_notes.append(text_of(item))
                turn = None
        elif item.type == "function_call":
            self._check_call_fields(item, ("call_id", "name"))
            turn = turn_of(item)
        elif item.type == "function_call_output":
            self._check_call_fields(item, ("call_id",))
            turn = None  # decided below: a live answer to Gemini, or history
        else:
            raise ClientError(
                "invalid_value",
                f"Invalid value: '{item.type}'. Supported values are: 'message', 'function_call', "
                "'function_call_output'.",
                "item.type",
            )
        if ev.previous_item_id not in (None, self._items.last_id()):
            # Gemini's context is append-only; say so instead of silently reordering.
            log.info("previous_item_id %r ignored: items are appended", ev.previous_item_id)
        if item.id is None:
            item.id = self._items.new_id(self._ids)
        elif self._items.get(item.id) is not None:
            raise ClientError("duplicate_item_id", f"Item with id '{item.id}' already exists.", "item.id")
        item.object = "realtime.item"
        item.status = "completed"
        previous = self._items.last_id()
        self._items.add(item)
        self._emit(oa.ConversationItemAdded(item, previous))
        self._emit(oa.ConversationItemDone(item, previous))
        if item.type == "function_call_output" and not self._function_call_output(item):
            item.name = self._history_call_name(item.call_id)
            turn = turn_of(item)
        if turn is not None:
            self._pending_turns.append(turn)
        if item.role == "user":
            self._user_input()

    def _check_call_fields(self, item: oa.Item, required: tuple[str, ...]) -> None:
        for name in required:
            if not getattr(item, name):
                raise ClientError("missing_required_parameter", f"Missing required parameter: 'item.{name}'.",
                                  f"item.{name}")
        if item.type == "function_call_output" and self._items_call_name(item.call_id) is None:
            raise ClientError(
                "invalid_value",
                f"No function call with call_id '{item.call_id}' in this conversation.",
                "item.call_id",
            )

    def _items_call_name(self, call_id: str | None) -> str | None:
        call = self._tools.calls.get(call_id or "")
        if call is not None:
            return call.name
        return self._history_call_name(call_id)

    def _history_call_name(self, call_id: str | None) -> str | None:
        for stored in self._items:
            if stored.type == "function_call" and stored.call_id == call_id:
                return stored.name
        return None

    def _check_message(self, item: oa.Item) -> None:
        if item.role not in ("user", "assistant", "system"):
            raise ClientError(
                "invalid_value",
                f"Invalid value: '{item.role}'. Supported values are: 'user', 'assistant', 'system'.",
                "item.role",
            )
        allowed = {
            "user": ("input_text", "input_audio", "input_image"),
            "system": ("input_text",),
            "assistant": ("text", "output_text"),
        }[item.role]
        for i, part in enumerate(item.content or ()):
            if part.type not in allowed:
                raise ClientError(
                    "invalid_value",
                    f"Invalid value: '{part.type}'. Supported values for {item.role} content are: "
                    + ", ".join(f"'{a}'" for a in allowed) + ".",
                    f"item.content[{i}].type",
                )
            if part.type == "output_text":
                part.type = "text"
            elif part.type == "input_image":
                if part.detail not in (None, "auto", "low", "high"):
                    raise ClientError("invalid_value", f"Invalid value: '{part.detail}'. Supported values are: "
                                      "'auto', 'low', 'high'.", f"item.content[{i}].detail")
                part.blob = image_blob(part.image_url, f"item.content[{i}].image_url")
            elif part.type == "input_audio" and part.audio:
                part.blob = audio_blob(part.audio, self.session.input_audio_format, f"item.content[{i}].audio")
        if not item.content:
            raise ClientError(
                "missing_required_parameter", "Missing required parameter: 'item.content'.", "item.content"
            )

    def _on_InputText(self, ev: oa.InputText) -> None:
        answers_held = self._held is not None
        item = oa.Item(type="message", role="user", content=[oa.ContentPart(type="input_text", text=ev.text)])
        self._on_ConversationItemCreate(oa.ConversationItemCreate(item=item))
        if not answers_held:
            self._on_ResponseCreate(oa.ResponseCreate())

    def _user_input(self) -> None:
        self._had_user_input = True
        self._idle_disarm()
        if self._held is not None:
            held, self._held = self._held, None
            self._request_response(held)

    def _on_ConversationItemRetrieve(self, ev: oa.ConversationItemRetrieve) -> None:
        item = self._items.get(ev.item_id)
        if item is None:
            raise ClientError("item_not_found", f"Item with id '{ev.item_id}' not found.", "item_id")
        self._emit(oa.ConversationItemRetrieved(item))

    def _on_ConversationItemDelete(self, ev: oa.ConversationItemDelete) -> None:
        if not self._items.delete(ev.item_id):
            raise ClientError("item_not_found", f"Item with id '{ev.item_id}' not found.", "item_id")
        self._emit(oa.ConversationItemDeleted(ev.item_id))

    def _on_ConversationItemTruncate(self, ev: oa.ConversationItemTruncate) -> None:
        item = self._items.get(ev.item_id)
        if item is None:
            raise ClientError("item_not_found", f"Item with id '{ev.item_id}' not found.", "item_id")
        if item.role != "assistant" or not item.content or item.content[0].type != "audio":
            raise ClientError(
                "invalid_value", "Only assistant messages with audio can be truncated.", "item_id"
            )
        if ev.content_index != 0:
            raise ClientError("invalid_value", "Invalid 'content_index': the item has one audio part.", "content_index")
        part = item.content[0]
        if ev.audio_end_ms < 0 or ev.audio_end_ms > part.audio_ms + 1:
            raise ClientError(
                "invalid_value",
                f"Invalid 'audio_end_ms': {ev.audio_end_ms} ms is beyond the {part.audio_ms:.0f} ms of audio.",
                "audio_end_ms",
            )
        # The played part of the transcript, by proportion of words: Gemini gives no word timings.
        if part.transcript and part.audio_ms > 0:
            words = part.transcript.split(" ")
            keep = round(len(words) * min(1.0, ev.audio_end_ms / part.audio_ms))
            part.transcript = " ".join(words[:keep])
        part.audio_ms = min(part.audio_ms, float(ev.audio_end_ms))
        self._emit(oa.ConversationItemTruncated(ev.item_id, ev.content_index, ev.audio_end_ms))



def text_of(item: oa.Item) -> str:
    return "".join(p.text or p.transcript or "" for p in item.content or ())


def turn_of(item: oa.Item) -> dict[str, Any] | None:
    """An item as a Gemini `clientContent` turn (history replay uses this too)."""
    if item.type == "function_call":
        try:
            args = orjson.loads(item.arguments) if item.arguments else {}
        except orjson.JSONDecodeError:
            args = {}
        call: dict[str, Any] = {"name": item.name, "args": args if isinstance(args, dict) else {}}
        return {"role": "model", "parts": [{"functionCall": call}]}
    if item.type == "function_call_output":
        if not item.name:
            return None
        entry = function_response(Call(name=item.name, gemini_id=None), item.output, send_id=False)
        return {"role": "user", "parts": [{"functionResponse": entry}]}
    if item.type != "message":
        return None
    parts: list[dict[str, Any]] = []
    for p in item.content or ():
        if p.type in ("input_text", "text", "output_text") and p.text:
            parts.append({"text": p.text})
        elif p.type in ("input_image", "input_audio") and p.blob is not None:
            parts.append({"inlineData": dict(p.blob)})
        elif p.type in ("audio", "input_audio") and p.transcript:
            parts.append({"text": p.transcript})
    if not parts:
        return None
    if item.role == "system":
        parts = [{"text": "System instruction: " + "".join(p.get("text", "") for p in parts)}]
    return {"role": "model" if item.role == "assistant" else "user", "parts": parts}

