"""One committed change, as read from a MongoDB change stream."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

OPERATIONS = ("insert", "update", "replace", "delete")
# Events about collections rather than documents (a drop in the shell): the hub reacts to them itself.
STRUCTURAL = ("drop", "dropDatabase", "rename", "invalidate")


class Fragments:
    """Puts back together an event MongoDB split because it was over 16 MB (`splitEvent`)."""

    def __init__(self) -> None:
        self.parts: list[dict[str, Any]] = []

    def add(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """The whole event once its last fragment is in (its `_id` is that fragment's), else None."""
        split = event.get("splitEvent")
        if not isinstance(split, dict):
            return event
        self.parts.append(event)
        if split.get("fragment") != split.get("of"):
            return None
        whole: dict[str, Any] = {}
        for part in self.parts:
            whole.update(part)
        self.parts = []
        whole.pop("splitEvent", None)
        return whole


@dataclass(frozen=True, slots=True)
class Change:
    token: str  # the resume token's `_data`: ordered, and the cursor clients get
    coll: str
    op: str  # insert | update | delete (a replace is an update) | drop (the collection, for observers)
    id: Any
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    wall: datetime | None = None
    transaction: bool = False  # made in a multi-document transaction (the event names its txnNumber)

    @property
    def ends_session(self) -> bool:
        """For a `sessions` change: the session is over (deleted, dropped with its collection, or its
        expiry moved into the past in the shell)."""
        if self.op in ("delete", "drop"):
            return True
        expires = (self.after or {}).get("expires_at")
        return self.op == "update" and not (isinstance(expires, datetime) and expires > datetime.now(UTC))

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> Change | None:
        kind = event.get("operationType")
        if kind not in OPERATIONS:
            return None
        return cls(
            token=event["_id"]["_data"],
            coll=event["ns"]["coll"],
            op="update" if kind == "replace" else kind,
            id=event["documentKey"]["_id"],
            before=event.get("fullDocumentBeforeChange"),
            after=None if kind == "delete" else event.get("fullDocument"),
            wall=event.get("wallTime"),
            transaction="txnNumber" in event,
        )
