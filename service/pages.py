"""Cursor pagination, newest first, without ever counting a collection."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .database import DESCENDING, Collection, Document, parse_id

DEFAULT_LIMIT = 20
MAX_LIMIT = 100


async def newest_first(
    collection: Collection, query: Mapping[str, Any], limit: int, after: str | None
) -> tuple[list[Document], str | None]:
    """One page of `query` by descending `_id`; `next` is the last item's id when more follow."""
    query = dict(query)
    if after is not None:
        query["_id"] = {"$lt": parse_id(after, "after")}
    docs = await collection.find(query).sort("_id", DESCENDING).limit(limit + 1).to_list()
    if len(docs) > limit:
        docs = docs[:limit]
        return docs, str(docs[-1]["_id"])
    return docs, None
