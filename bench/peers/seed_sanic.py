"""The seed's original microservice: Sanic and an async MongoDB driver, two routes, no auth, no validation.

The floor of what Sanic + an async driver can do; run with `python bench/peers/seed_sanic.py`.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from pymongo import AsyncMongoClient
from sanic import Request, Sanic, response

app = Sanic("seed")


def plain(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: (str(v) if not isinstance(v, (str, int, float, list, type(None), datetime)) else
                v.isoformat() if isinstance(v, datetime) else v) for k, v in doc.items()}  # fmt: skip


@app.before_server_start
async def connect(app: Sanic) -> None:
    app.ctx.db = AsyncMongoClient(os.environ["MONGO_URL"], w="majority")[os.environ["MONGO_DB"]]


@app.get("/contacts")
async def contacts(request: Request) -> response.HTTPResponse:
    docs = await app.ctx.db.contacts.find({}).limit(20).to_list()
    return response.json([plain(doc) for doc in docs])


@app.post("/contacts")
async def create(request: Request) -> response.HTTPResponse:
    doc = dict(request.json)
    await app.ctx.db.contacts.insert_one(doc)
    return response.json(plain(doc), status=201)


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ["PORT"]), workers=int(os.environ.get("WORKERS", "1")),
            access_log=False, motd=False)  # fmt: skip
