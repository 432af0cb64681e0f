"""The local conversation: every item in order, for `previous_item_id`, retrieve and delete, and to
replay history to a fresh upstream connection.  Gemini keeps no addressable items."""

from __future__ import annotations

from relay.events import openai as oa
from relay.ids import IdFactory


class ItemStore:
    def __init__(self) -> None:
        self._items: dict[str, oa.Item] = {}  # insertion-ordered
        # Neighbours by id, so `previous_item_id` costs the same in a long session as in a new one.
        self._prev: dict[str, str | None] = {}
        self._next: dict[str, str | None] = {}

    def add(self, item: oa.Item) -> None:
        """Append `item` to the end of the conversation."""
        assert item.id is not None and item.id not in self._items
        last = self.last_id()
        self._items[item.id] = item
        self._prev[item.id] = last
        self._next[item.id] = None
        if last is not None:
            self._next[last] = item.id

    def new_id(self, ids: IdFactory) -> str:
        """A fresh item id: clients may choose ids of the relay's own pattern, so skip taken ones."""
        while True:
            item_id = ids("item_")
            if item_id not in self._items:
                return item_id

    def get(self, item_id: str) -> oa.Item | None:
        return self._items.get(item_id)

    def delete(self, item_id: str) -> bool:
        if self._items.pop(item_id, None) is None:
            return False
        before, after = self._prev.pop(item_id), self._next.pop(item_id)
        if before is not None:
            self._next[before] = after
        if after is not None:
            self._prev[after] = before
        return True

    def last_id(self) -> str | None:
        return next(reversed(self._items), None)

    def previous_id(self, item_id: str) -> str | None:
        return self._prev.get(item_id)

    def __iter__(self):
        return iter(self._items.values())

    def __len__(self) -> int:
        return len(self._items)
