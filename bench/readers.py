"""The many-readers case: N distinct users, each with a session, all collaborators of one document.

They are written straight into MongoDB in the shape the service stores (as an operator's import would):
registering 5,000 accounts through the API would spend minutes hashing passwords, and sharing through
`POST /documents/{id}/collaborators` answers the whole document each time (quadratic in the roster).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

from argon2 import PasswordHasher
from bson import ObjectId
from pymongo import MongoClient

BATCH = 1000


def seed(mongo_url: str, database: str, document: str, count: int, tokens_file: Path) -> Path:
    """Create `count` users with one session each, make them viewers of `document`; their bearer
    tokens, one a line, go to `tokens_file`."""
    now = datetime.now(UTC).replace(microsecond=0)
    password = PasswordHasher().hash("bench pass")  # one hash for all: they can log in, but none is needed
    users = [{"_id": ObjectId(), "email": f"reader{i}@example.com", "name": f"Reader {i}", "password": password,
              "created_at": now, "email_verified": True} for i in range(count)]  # fmt: skip
    tokens = ["mm_" + secrets.token_urlsafe(32) for _ in users]
    sessions = [{"_id": hashlib.sha256(token.encode()).hexdigest(), "user": user["_id"], "created_at": now,
                 "expires_at": now + timedelta(days=1)} for token, user in zip(tokens, users, strict=True)]  # fmt: skip
    with MongoClient(mongo_url, w="majority") as client:
        db = client[database]
        for start in range(0, count, BATCH):
            db.users.insert_many(users[start : start + BATCH], ordered=False)
            db.sessions.insert_many(sessions[start : start + BATCH], ordered=False)
        roster = [{"_id": user["_id"], "name": user["name"], "role": "viewer"} for user in users]
        db.documents.update_one(
            {"_id": ObjectId(document)},
            {
                "$push": {"collaborators": {"$each": roster}},
                "$addToSet": {"access": {"$each": [u["_id"] for u in users]}},
            },
        )
    tokens_file.write_text("\n".join(tokens) + "\n")
    return tokens_file
