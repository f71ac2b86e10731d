"""One committed change, as read from a MongoDB change stream."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

OPERATIONS = ("insert", "update", "replace", "delete")


@dataclass(frozen=True, slots=True)
class Change:
    token: str  # the resume token's `_data`: ordered, and the cursor clients get
    coll: str
    op: str  # insert | update | delete (a replace is an update)
    id: Any
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    wall: datetime | None = None

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
        )
