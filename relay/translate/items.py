"""The local conversation: every item in order, for `previous_item_id`, retrieve and delete, and to
replay history to a fresh upstream connection.  Gemini keeps no addressable items."""

from __future__ import annotations

from relay.events import openai as oa
from relay.ids import IdFactory


class ItemStore:
    def __init__(self) -> None:
        self._items: dict[str, oa.Item] = {}  # insertion-ordered

    def add(self, item: oa.Item) -> None:
        assert item.id is not None
        self._items[item.id] = item

    def new_id(self, ids: IdFactory) -> str:
        """A fresh item id: clients may choose ids of the relay's own pattern, so skip taken ones."""
        while True:
            item_id = ids("item_")
            if item_id not in self._items:
                return item_id

    def get(self, item_id: str) -> oa.Item | None:
        return self._items.get(item_id)

    def delete(self, item_id: str) -> bool:
        return self._items.pop(item_id, None) is not None

    def last_id(self) -> str | None:
        return next(reversed(self._items), None)

    def previous_id(self, item_id: str) -> str | None:
        previous = None
        for key in self._items:
            if key == item_id:
                return previous
            previous = key
        return None

    def __iter__(self):
        return iter(self._items.values())

    def __len__(self) -> int:
        return len(self._items)
