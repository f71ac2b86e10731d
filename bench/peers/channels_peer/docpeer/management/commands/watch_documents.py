"""`python manage.py watch_documents`: follow MongoDB's `documents` and send each change to its group.

A process of its own, next to daphne, as Channels users run background work: group_send goes through
Redis, so the watcher need not live in a web server, and with several daphne processes a watcher in
each would send every change once per process.
"""

import asyncio
import json
from typing import Any

from bson import ObjectId
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.management.base import BaseCommand
from django.core.serializers.json import DjangoJSONEncoder
from pymongo import AsyncMongoClient

from docpeer.consumers import group_name

CHANGES = [{"$match": {"operationType": {"$in": ["insert", "update", "replace"]}}}]


class MongoJSONEncoder(DjangoJSONEncoder):  # type: ignore[misc]
    """Dates as ISO 8601 with milliseconds and `Z` (Django's), ObjectIds as hex."""

    def default(self, o: Any) -> Any:
        return str(o) if isinstance(o, ObjectId) else super().default(o)


def plain(document: dict[str, Any]) -> dict[str, Any]:
    """The document as JSON types: the channel layer's msgpack knows neither dates nor ObjectIds."""
    result: dict[str, Any] = json.loads(json.dumps(document, cls=MongoJSONEncoder))
    return result


class Command(BaseCommand):  # type: ignore[misc]
    help = "Follow the documents collection's change stream and send each change to the document's group"

    def handle(self, *args: Any, **options: Any) -> None:
        asyncio.run(self.watch())

    async def watch(self) -> None:
        layer = get_channel_layer()
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.MONGO_URL, tz_aware=True)
        documents = client[settings.MONGO_DB].documents
        async with await documents.watch(CHANGES, full_document="updateLookup") as stream:
            self.stdout.write("watching documents", ending="\n")
            self.stdout.flush()
            async for change in stream:
                document = change.get("fullDocument")
                if document is None:  # deleted before the lookup
                    continue
                await layer.group_send(
                    group_name(str(document["_id"])), {"type": "document.changed", "document": plain(document)}
                )
