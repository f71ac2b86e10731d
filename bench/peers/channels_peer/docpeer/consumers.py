"""One websocket: join a document's group, then receive each change of the document as JSON.

Protocol: the client sends `{"type": "join", "document": "<id>"}` and gets `{"type": "joined", ...}`
once it is in the group; then `{"type": "change", "document": {...}}` per change, the whole document
with `updated_at` in ISO 8601. No auth, no per-event authorization, no cursors (Murmuration has them).
"""

import re
from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer

# An ObjectId in hex; it also keeps the group name within what channel layers accept.
DOCUMENT_ID = re.compile(r"[0-9a-f]{24}")


def group_name(document_id: str) -> str:
    return f"document.{document_id}"


class DocumentConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    group: str | None = None

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        joining = isinstance(content, dict) and content.get("type") == "join"
        document_id = content.get("document") if joining else None
        if not isinstance(document_id, str) or not DOCUMENT_ID.fullmatch(document_id):
            await self.send_json({"type": "error", "message": 'send {"type": "join", "document": "<id>"}'})
            return
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)
        self.group = group_name(document_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.send_json({"type": "joined", "document": document_id})

    async def disconnect(self, code: int) -> None:
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def document_changed(self, event: dict[str, Any]) -> None:
        """A `document.changed` message from the watcher, sent to the group."""
        await self.send_json({"type": "change", "document": event["document"]})
