from __future__ import annotations

from app.errors import Conflict, NotFound


class ItemNotFound(NotFound):
    slug = "item-not-found"

    def __init__(self, item_id: int) -> None:
        super().__init__(f"Item {item_id} does not exist.")


class ItemNameTaken(Conflict):
    slug = "item-name-taken"

    def __init__(self) -> None:
        super().__init__("An item with this name already exists.")
