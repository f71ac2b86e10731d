"""The same two routes in FastAPI + uvicorn (with a pydantic body, as FastAPI users write them).

Run with `uvicorn bench.peers.fastapi_app:app --loop uvloop --http httptools`.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from pymongo import AsyncMongoClient

app = FastAPI()
db = AsyncMongoClient(os.environ["MONGO_URL"], w="majority")[os.environ["MONGO_DB"]]


class ContactIn(BaseModel):
    name: str
    email: str | None = None
    tags: list[str] = []


def plain(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: (str(v) if not isinstance(v, (str, int, float, list, type(None), datetime)) else
                v.isoformat() if isinstance(v, datetime) else v) for k, v in doc.items()}  # fmt: skip


@app.get("/contacts")
async def contacts() -> list[dict[str, Any]]:
    return [plain(doc) for doc in await db.contacts.find({}).limit(20).to_list()]


@app.post("/contacts", status_code=201)
async def create(contact: ContactIn) -> dict[str, Any]:
    doc = contact.model_dump()
    await db.contacts.insert_one(doc)
    return plain(doc)
