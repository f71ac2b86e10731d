"""The shape of every collection the service owns, as MongoDB `$jsonSchema` validators.

MongoDB itself refuses a write that does not fit (an operator's hand-made insert in the shell
included), with a message naming the rule. `validationLevel: moderate`: documents already stored
that do not fit (written before the validator, or by an older version) do not block start-up or
their own repair; the routes and the stream read around them (see stored.py).

Numbers the service writes as integers are accepted as doubles too: the shell writes `1` as 1.0.
Extra fields are allowed, so an operator's annotations and newer versions' fields fit.
docs/operations.md lists each collection's required fields for operators.
"""

from __future__ import annotations

from typing import Any

from models import contacts, documents, rooms

Schema = dict[str, Any]

WHOLE = ["int", "long", "double"]


def _t(kind: str | list[str], description: str, **rules: Any) -> Schema:
    return {"bsonType": kind, "description": description, **rules}


def _obj(required: list[str], description: str, **properties: Schema) -> Schema:
    return {"bsonType": "object", "required": required, "description": description, "properties": properties}


def _array(items: Schema, description: str) -> Schema:
    return {"bsonType": "array", "items": items, "description": description}


ID = _t("objectId", "must be an ObjectId")
DATE = _t("date", "must be a date (new Date() in the shell)")
TEXT = _t("string", "must be a string")
OPTIONAL_TEXT = _t(["string", "null"], "must be a string or null")
TAGS = _array(
    _t("string", "each tag must be a string of at most 50 characters", maxLength=50),
    "must be an array of at most 50 strings",
) | {"maxItems": 50}
REF = _obj(["_id", "name"], "must be {_id: ObjectId, name: string}", _id=ID, name=TEXT)
IDS = _array(ID, "must be an array of user ObjectIds")


def _collection(required: list[str], description: str, **properties: Schema) -> Schema:
    return {"$jsonSchema": _obj(required, description, **properties)}


def _text(most: int, least: int = 0) -> Schema:
    """A string within the API's own limits (so a hand-made one cannot outgrow what the API accepts)."""
    return _t("string", f"must be a string of {least} to {most} characters", minLength=least, maxLength=most)


def _optional_text(most: int) -> Schema:
    return _t(["string", "null"], f"must be a string of at most {most} characters, or null", maxLength=most)


SCHEMAS: dict[str, Schema] = {
    "users": _collection(
        ["email", "name", "password", "created_at"],
        "an account",
        _id=ID,
        email=_t("string", "must be a lower-case email address", minLength=3, maxLength=254),
        name=_text(100, 1),
        password=_t("string", "must be an argon2 hash (never a plain password)"),
        created_at=DATE,
        email_verified=_t("bool", "must be true or false (true: its owner proved the address)"),
    ),
    "sessions": _collection(
        ["_id", "user", "created_at", "expires_at"],
        "a session: _id is the sha256 of its token",
        _id=TEXT,
        user=ID,
        created_at=DATE,
        expires_at=DATE,
        last_used_at=DATE,
        user_agent=_optional_text(256),
        address=_optional_text(100),
    ),
    "tokens": _collection(
        ["_id", "kind", "user", "email", "expires_at"],
        "a mailed token: _id is the sha256 of it",
        _id=TEXT,
        kind=_t("string", "must be verify or reset", enum=["verify", "reset"]),
        user=ID,
        email=TEXT,
        expires_at=DATE,
    ),
    "invites": _collection(
        ["email", "kind", "target", "by", "created_at"],
        "a pending invite: access for whoever verifies `email`",
        _id=ID,
        email=TEXT,
        kind=_t("string", "must be document or room", enum=["document", "room"]),
        target=ID,
        by=ID,
        role=_t(["string", "null"], "must be editor, viewer or null", enum=["editor", "viewer", None]),
        created_at=DATE,
    ),
    "outbox": _collection(
        ["kind", "to", "status", "next_at", "created_at"],
        "a letter to send",
        kind=TEXT,
        to=TEXT,
        status=_t(
            "string",
            "must be pending, sending, sent, dropped or failed",
            enum=["pending", "sending", "sent", "dropped", "failed"],
        ),
        next_at=DATE,
        created_at=DATE,
    ),
    "throttles": _collection(
        ["_id", "failures", "expires_at"], "failed logins", failures=_t(WHOLE, "must be a number"), expires_at=DATE
    ),
    "contacts": _collection(
        ["owner", "name", "created_at", "updated_at"],
        "a contact",
        _id=ID,
        owner=ID,
        name=_text(contacts.NAME, 1),
        email=_optional_text(contacts.EMAIL),
        phone=_optional_text(contacts.PHONE),
        company=_optional_text(contacts.COMPANY),
        notes=_optional_text(contacts.NOTES),
        tags=TAGS,
        created_at=DATE,
        updated_at=DATE,
    ),
    "documents": _collection(
        ["title", "slug", "version", "owner", "collaborators", "access", "created_at", "updated_at"],
        "a document: access holds the ids of the owner and every collaborator",
        _id=ID,
        title=_text(documents.TITLE, 1),
        slug=_text(documents.SLUG),
        body=_text(documents.BODY),
        abstract=_text(documents.ABSTRACT),
        tags=TAGS,
        version=_t(WHOLE, "must be a whole number from 1", minimum=1),
        owner=REF,
        collaborators=_array(
            _obj(
                ["_id", "name", "role"],
                "must be {_id, name, role}",
                _id=ID,
                name=TEXT,
                role=_t("string", "must be editor or viewer", enum=["editor", "viewer"]),
            ),
            "must be an array of {_id, name, role}",
        ),
        access=IDS,
        updated_by=REF,
        created_at=DATE,
        updated_at=DATE,
    ),
    "revisions": _collection(
        ["document", "version", "title", "edited_by", "edited_at"],
        "an earlier version of a document",
        document=ID,
        version=_t(WHOLE, "must be a whole number"),
        title=_text(documents.TITLE),
        body=_text(documents.BODY),
        abstract=_text(documents.ABSTRACT),
        tags=TAGS,
        edited_by=REF,
        edited_at=DATE,
    ),
    "presence": _collection(
        ["document", "user", "name", "state", "conn", "instance", "at"],
        "one connection on one document",
        document=ID,
        user=ID,
        name=TEXT,
        state=_t("string", "must be viewing or editing", enum=["viewing", "editing"]),
        conn=TEXT,
        instance=TEXT,
        at=DATE,
    ),
    "connections": _collection(
        ["_id", "user", "instance", "at"], "an open websocket", _id=TEXT, user=ID, instance=TEXT, at=DATE
    ),
    "instances": _collection(["_id", "heartbeat_at"], "a running worker", _id=TEXT, heartbeat_at=DATE),
    "rooms": _collection(
        ["name", "members", "access", "created_by", "created_at"],
        "a chat room: access holds the member ids",
        _id=ID,
        name=_text(rooms.ROOM_NAME, 1),
        members=_array(REF, "must be an array of {_id, name}"),
        access=IDS,
        created_by=REF,
        created_at=DATE,
    ),
    "messages": _collection(
        ["room", "author", "text", "access", "created_at"],
        "a chat message: access holds the room's member ids when it was sent",
        _id=ID,
        room=ID,
        author=REF,
        text=_t("string", f"must be 1 to {rooms.TEXT} characters", minLength=1, maxLength=rooms.TEXT),
        client_id=_text(rooms.CLIENT_ID, 1),
        access=IDS,
        created_at=DATE,
    ),
    "reads": _collection(["_id", "message", "at"], "a read marker: _id is room:user", _id=TEXT, message=ID, at=DATE),
    "signals": _collection(
        ["room", "user", "name", "access", "at", "expires_at"],
        "someone typing",
        room=ID,
        user=ID,
        name=TEXT,
        access=IDS,
        at=DATE,
        expires_at=DATE,
    ),
    "orders": _collection(
        [
            "owner",
            "idempotency_key",
            "fingerprint",
            "status",
            "amount",
            "currency",
            "items",
            "errors",
            "attempts",
            "sale_attempted",
            "next_attempt_at",
            "created_at",
            "updated_at",
        ],
        "an order",
        _id=ID,
        owner=ID,
        idempotency_key=TEXT,
        fingerprint=TEXT,
        status=_t(
            "string",
            "must be an order status",
            enum=["pending", "processing", "paid", "declined", "failed", "cancelling", "voided", "refunded"],
        ),
        amount=_t("string", "must be a decimal string with two decimals", pattern=r"^[0-9]+\.[0-9]{2}$"),
        currency=TEXT,
        items=_array(
            _obj(
                ["sku", "name", "quantity", "price", "total"],
                "must be an order line",
                sku=TEXT,
                name=TEXT,
                quantity=_t(WHOLE, "must be a whole number from 1", minimum=1),
                price=TEXT,
                total=TEXT,
            ),
            "must be an array of order lines",
        ),
        nonce=_text(4096, 1),
        transaction=_t(["object", "null"], "must be {id, status} or null"),
        errors=_array(
            _obj(["code", "message"], "must be {code, message}", code=TEXT, message=TEXT),
            "must be an array of {code, message}",
        ),
        attempts=_t(WHOLE, "must be a number"),
        sale_attempted=_t("bool", "must be true or false"),
        lease_owner=OPTIONAL_TEXT,
        lease_until=_t(["date", "null"], "must be a date or null"),
        next_attempt_at=DATE,
        created_at=DATE,
        updated_at=DATE,
    ),
}
