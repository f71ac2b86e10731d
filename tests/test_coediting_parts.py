"""Live co-editing's replicas driven with no socket, two instances on one database (the `run` fixture):
what the change stream brings while a replica is being read from the log."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

from pycrdt import Doc, Text

from models.documents import DocumentIn
from service import documents
from service.accounts import User
from service.coediting.editors import Editors
from service.coediting.ledger import number
from service.coediting.replica import Replica
from service.context import Context
from service.lifecycle import running
from service.payments.catalog import Catalog

from .parts import account, until


class Paused:
    """`doc_updates`, except that every read of the log stops after its first entry until `go` is
    called (by then the cursor holds every entry there was: one logged meanwhile is not in it)."""

    def __init__(self, collection: Any) -> None:
        self.collection = collection
        self.reads: asyncio.Queue[asyncio.Event] = asyncio.Queue()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.collection, name)

    def find(self, *args: Any, **kwargs: Any) -> Paused:
        self.cursor = self.collection.find(*args, **kwargs)
        return self

    def sort(self, *args: Any) -> Paused:
        self.cursor = self.cursor.sort(*args)
        return self

    async def __aiter__(self) -> AsyncIterator[Any]:
        first = True
        async for record in self.cursor:
            yield record
            if first:
                first, go = False, asyncio.Event()
                self.reads.put_nowait(go)
                await go.wait()


class Typist:
    """A Yjs client typing at the end of the text, through one instance's editors."""

    def __init__(self, context: Context, user: User, document: Any, state: bytes) -> None:
        self.context, self.user, self.document = context, user, document
        self.doc: Doc[Text] = Doc(client_id=4242)
        self.text = self.doc.get("body", type=Text)
        self.doc.apply_update(state)

    async def type(self, char: str) -> int | None:
        before = self.doc.get_state()
        self.text.insert(len(self.text), char)
        return await self.context.editors.update(self.user, self.document, self.doc.get_update(before))


def text_of(update: bytes) -> str:
    doc: Doc[Text] = Doc()
    doc.apply_update(update)
    return str(doc.get("body", type=Text))


def test_an_update_logged_while_a_replica_is_being_read_is_in_the_sync_it_gives(run, monkeypatch) -> None:
    async def scenario(context: Context) -> None:
        user, _ = await account(context)
        document = (await documents.create(context.db, user, DocumentIn(title="Plan", body="Hello")))["_id"]
        elsewhere = dataclasses.replace(context.settings, instance="elsewhere")
        async with running(elsewhere, Catalog.load(elsewhere.catalog_path), 1.0) as other:
            typist = Typist(other, user, document, (await other.editors.replica(document)).missing(None))
            for char in "abc":
                await typist.type(char)
            logged: list[Any] = []
            context.hub.observe("doc_updates", lambda change: logged.append(change and change.after.get("seq")))
            paused = Paused(context.db.doc_updates)
            monkeypatch.setattr(context.db, "doc_updates", paused)
            context.editors.replicas.pop(document, None)  # this instance reads it from the log, as a new one

            async def subscribe() -> dict[str, Any]:
                async with context.editors.settled(document):
                    return context.editors.opening(document, None, "editor")

            sync = asyncio.create_task(subscribe())
            typed = "Helloabc"
            # A busy document: every time this instance reads the log, the other logs one more update.
            while not sync.done():
                read = asyncio.create_task(paused.reads.get())
                await asyncio.wait([read, sync], timeout=10, return_when=asyncio.FIRST_COMPLETED)
                if not read.done():
                    read.cancel()
                    break
                seq = await typist.type("!")
                typed += "!"
                await until(lambda seq=seq: seq in logged)  # this instance's stream has brought it
                read.result().set()
            opened = await asyncio.wait_for(sync, 10)
            assert opened["seq"] == seq and text_of(base64.b64decode(opened["update"])) == typed, opened

    run(scenario)


def test_a_seq_the_shell_wrote_as_a_double_is_read_as_the_integer() -> None:
    assert [number(value) for value in (5, 5.0, 2.0**52, 5.5, -1.0, float("nan"), True, "5", None)] == [
        5, 5, 2**52, 0, 0, 0, 0, 0, 0,
    ]  # fmt: skip


def test_the_stream_reads_a_seq_as_the_log_does() -> None:
    writer: Doc[Text] = Doc(client_id=77)
    writer.get("body", type=Text).insert(0, "x")
    replica = Replica()
    Editors._follow(replica, True, writer.get_update())  # `true` is no seq: nothing folded
    assert replica.seq == 0 and replica.body() == ""
    Editors._follow(replica, 1.0, writer.get_update())  # the shell's double: the next update, folded
    assert replica.seq == 1 and replica.body() == "x"
