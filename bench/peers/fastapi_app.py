"""The same two routes in FastAPI + uvicorn, doing the same work, written as FastAPI users write them.

Same work as Murmuration's `GET /contacts` and `POST /contacts`: a bearer token checked against the
same `sessions` collection (sha256 of the token, not expired) in a dependency, the caller's contacts
only, newest first, 20 a page, ids as strings and ISO 8601 timestamps through a pydantic response
model; POST validates its body with pydantic and stores the owner and timestamps. What it does not do:
a per-user rate limit, a write budget, metrics, stored-shape checks. Like most FastAPI apps, the
dependency reads the session from MongoDB on each request (Murmuration keeps a cache of tokens that the
change stream keeps exact, a design FastAPI apps do not have).

Run with `uvicorn bench.peers.fastapi_app:app --loop uvloop --http httptools`.
"""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime
from typing import Annotated, Any

from bson import ObjectId
from fastapi import Depends, FastAPI, Header, HTTPException
from pydantic import BaseModel, Field, field_serializer
from pymongo import DESCENDING, AsyncMongoClient

app = FastAPI()
db = AsyncMongoClient(os.environ["MONGO_URL"], w="majority", tz_aware=True)[os.environ["MONGO_DB"]]


class ContactIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    email: str | None = Field(default=None, max_length=254)
    phone: str | None = Field(default=None, max_length=50)
    company: str | None = Field(default=None, max_length=200)
    notes: str | None = Field(default=None, max_length=10_000)
    tags: list[str] = Field(default_factory=list, max_length=50)


class ContactOut(BaseModel):
    id: str
    name: str
    email: str | None = None
    phone: str | None = None
    company: str | None = None
    notes: str | None = None
    tags: list[str] = []
    created_at: datetime
    updated_at: datetime

    @field_serializer("created_at", "updated_at")
    def _iso(self, value: datetime) -> str:
        return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    @classmethod
    def of(cls, doc: dict[str, Any]) -> ContactOut:
        return cls(id=str(doc["_id"]), **{k: v for k, v in doc.items() if k not in ("_id", "owner")})


class ContactPage(BaseModel):
    items: list[ContactOut]
    next: str | None


async def current_user(authorization: Annotated[str | None, Header()] = None) -> ObjectId:
    if not authorization or not authorization.startswith("Bearer "):
        raise HTTPException(401, "missing token")
    key = hashlib.sha256(authorization[7:].encode()).hexdigest()
    session = await db.sessions.find_one({"_id": key, "expires_at": {"$gt": datetime.now(UTC)}})
    if session is None:
        raise HTTPException(401, "the token is unknown, expired or revoked")
    return session["user"]


User = Annotated[ObjectId, Depends(current_user)]


@app.get("/contacts", response_model=ContactPage)
async def contacts(user: User, limit: int = 20) -> ContactPage:
    docs = await db.contacts.find({"owner": user}).sort("_id", DESCENDING).limit(limit + 1).to_list()
    more = len(docs) > limit
    items = [ContactOut.of(doc) for doc in docs[:limit]]
    return ContactPage(items=items, next=items[-1].id if more else None)


@app.post("/contacts", status_code=201, response_model=ContactOut)
async def create(contact: ContactIn, user: User) -> ContactOut:
    stamp = datetime.now(UTC)
    doc = {"owner": user, **contact.model_dump(), "created_at": stamp, "updated_at": stamp}
    await db.contacts.insert_one(doc)
    return ContactOut.of(doc)
