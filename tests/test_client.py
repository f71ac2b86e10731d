"""The Python client (clients/python) against a running server: it resumes for you.

Its protocol state is checked first with no socket at all, then end to end: a server restart, a drop
before a subscription's first event, an expired cursor, a chat send made while the server was away.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

import pytest
from bson import ObjectId
from murmuration_client import Client, CursorExpired, Event, SessionEnded, Stream
from murmuration_client.subscriptions import Subscriptions

from .feed import cursor_after_a_write
from .harness import ROOT

T = TypeVar("T")


# --- the protocol's state, with no socket -----------------------------------------------------------


def test_a_new_connection_resubscribes_from_the_last_cursor_delivered() -> None:
    state = Subscriptions()
    state.add("s1", "documents", {}, None)
    state.receive({"type": "subscribed", "id": "s1", "cursor": "c0"})
    state.receive({"type": "event", "sub": "s1", "stream": "documents", "op": "insert", "id": "d", "cursor": "c1"})
    state.delivered("s1", "c1")
    assert state.on_connect() == [{"type": "subscribe", "id": "s1", "stream": "documents", "params": {}, "since": "c1"}]


def test_a_paused_subscription_is_left_out_until_resumed_from_its_last_delivered_cursor() -> None:
    state = Subscriptions()
    state.add("s1", "documents", {}, "c1")
    assert state.pause("s1") == {"type": "unsubscribe", "id": "s1"}
    event = {"type": "event", "sub": "s1", "stream": "documents", "op": "insert", "id": "d", "cursor": "c2"}
    assert state.receive(event).kind == "ignored" and state.on_connect() == []
    assert state.resume("s1") == {"type": "subscribe", "id": "s1", "stream": "documents", "params": {}, "since": "c1"}


def test_events_of_a_paused_subscription_still_on_the_way_after_it_resumes_are_not_delivered() -> None:
    state = Subscriptions()
    state.add("s1", "documents", {}, "c1")
    state.pause("s1")
    state.resume("s1")  # the consumer caught up before the server's frames sent before the pause were read
    late = {"type": "event", "sub": "s1", "stream": "documents", "op": "insert", "id": "d3", "cursor": "c3"}
    assert state.receive(late).kind == "ignored"  # the resumed subscription replays it, in its place
    assert state.receive({"type": "unsubscribed", "id": "s1"}).kind == "ignored"
    replayed = {"type": "event", "sub": "s1", "stream": "documents", "op": "insert", "id": "d2", "cursor": "c2"}
    assert state.receive(replayed).kind == "event"


def test_a_subscription_with_no_event_yet_resumes_from_where_it_went_live() -> None:
    state = Subscriptions()
    state.add("s1", "contacts", {}, None)
    state.receive({"type": "subscribed", "id": "s1", "cursor": "c0"})
    assert state.on_connect()[0]["since"] == "c0"


def test_a_chat_send_is_sent_again_until_it_is_acknowledged() -> None:
    state = Subscriptions()
    sent = state.send_chat("r", "hello", "k1")
    assert state.on_connect() == [sent]
    assert state.receive({"type": "ack", "client_id": "k1", "message": {"id": "m"}}).kind == "ack"
    assert state.on_connect() == []


def test_a_state_stream_is_subscribed_again_without_a_cursor() -> None:
    state = Subscriptions()
    state.add("s1", "presence", {}, None)
    state.receive({"type": "subscribed", "id": "s1", "cursor": "c0"})
    assert "since" not in state.on_connect()[0]


def test_a_refused_subscription_is_not_resubscribed() -> None:
    state = Subscriptions()
    state.add("s1", "room", {"room": "x"}, None)
    delivery = state.receive({"type": "error", "id": "s1", "code": "not_found", "message": "no such room"})
    assert (delivery.kind, delivery.subscription) == ("refused", "s1") and state.on_connect() == []


# --- against a running server ----------------------------------------------------------------------


async def within(awaitable: Awaitable[T], seconds: float = 30) -> T:
    return await asyncio.wait_for(awaitable, seconds)


async def next_event(stream: Stream) -> Event:
    return await within(anext(stream))


async def live(client: Client, stream: Stream) -> None:
    """Wait until the server said the subscription is live (its `subscribed` cursor is known)."""
    while not (stream.id in client.state.active and client.state.active[stream.id].live):
        await asyncio.sleep(0.02)


async def documents_and_contacts(client: Client) -> tuple[Stream, Stream]:
    """Both streams on the client's one socket, once each is live."""
    documents, contacts = client.subscribe("documents"), client.subscribe("contacts")
    await within(live(client, documents))
    await within(live(client, contacts))
    return documents, contacts


def blocking(function: Callable[[], T]) -> Awaitable[T]:
    return asyncio.to_thread(function)


def test_a_followed_document_survives_a_server_restart_with_nothing_missed_or_twice(server, signup, db) -> None:
    ann = signup("Ann")

    async def scenario() -> None:
        async with Client(server.url, ann.token) as client:
            # One socket; a subscription without `since` starts when it is live, so these see no event
            # from before the drop.
            documents, contacts = await documents_and_contacts(client)
            first = await client.post("/documents", {"title": "before the restart"})
            assert (await next_event(documents)).id == first["id"]
            await blocking(server.stop)
            stamp = datetime.now(UTC)
            away = db.contacts.insert_one({"owner": ObjectId(ann.user["id"]), "name": "written while away",
                                           "tags": [], "created_at": stamp, "updated_at": stamp})  # fmt: skip
            await blocking(server.start)
            second = await client.post("/documents", {"title": "after the restart"})
            assert (await next_event(contacts)).id == str(away.inserted_id)
            assert (await next_event(documents)).id == second["id"]
            third = await client.post("/contacts", {"name": "the next one"})
            assert (await next_event(contacts)).id == third["id"]  # nothing came twice before it

    asyncio.run(scenario())


def test_an_expired_cursor_raises_and_the_documented_recovery_works(server, signup) -> None:
    ann = signup("Ann")
    cursor = cursor_after_a_write(server, ann)
    ancient = cursor[:2] + "00000010" + cursor[10:]  # the same token, from before the oplog's window

    async def scenario() -> None:
        async with Client(server.url, ann.token, first_frame_auth=True) as client:
            with pytest.raises(CursorExpired):
                await next_event(client.subscribe("contacts", since=ancient))
            known = [contact["id"] async for contact in client.pages("/contacts", limit=1)]  # reload by REST
            assert len(known) == 1
            again = client.subscribe("contacts")  # then follow from now
            await within(live(client, again))
            new = await client.post("/contacts", {"name": "after the recovery"})
            assert (await next_event(again)).id == new["id"]

    asyncio.run(scenario())


def test_a_chat_message_sent_while_the_server_is_away_is_stored_once(server, signup) -> None:
    ann = signup("Ann")

    async def scenario() -> None:
        async with Client(server.url, ann.token) as client:
            room = await client.post("/rooms", {"name": "retries"})
            await within(client.ready.wait())
            await blocking(server.stop)
            sending = asyncio.create_task(client.send_chat(room["id"], "are you there?", client_id="m-1"))
            await blocking(server.start)
            message = await within(sending)
            again = await within(client.send_chat(room["id"], "are you there?", client_id="m-1"))  # a retry
            assert again["id"] == message["id"]
            stored = await client.get(f"/rooms/{room['id']}/messages")
            assert [m["client_id"] for m in stored["items"]] == ["m-1"]
            await within(client.ping())

    asyncio.run(scenario())


def test_the_command_line_watcher_prints_json_lines_and_starts_after_since(server, signup) -> None:
    ann = signup("Ann")
    since = cursor_after_a_write(server, ann)  # from here, whenever the watcher's subscription goes live
    command = [sys.executable, "-m", "murmuration_client", "--url", server.url, "--stream", "contacts",
               "--count", "1"]  # fmt: skip
    env = {"MURMURATION_TOKEN": ann.token, "PATH": ""}
    watcher = subprocess.Popen([*command, "--since", since], stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    contact = ann.post("/contacts", json={"name": "Watched"}).json()
    out, _ = watcher.communicate(timeout=30)
    event = json.loads(out.splitlines()[0])
    assert (event["op"], event["id"], event["stream"]) == ("insert", contact["id"], "contacts")
    later = ann.post("/contacts", json={"name": "Missed"}).json()
    resumed = subprocess.run([*command, "--since", event["cursor"]], capture_output=True, text=True, timeout=30,
                             env=env, cwd=ROOT)  # fmt: skip
    assert json.loads(resumed.stdout.splitlines()[0])["id"] == later["id"]


def test_closing_the_client_ends_its_streams_instead_of_leaving_them_waiting(server, signup) -> None:
    ann = signup("Ann")

    async def scenario() -> None:
        client = await Client(server.url, ann.token).__aenter__()
        stream = client.subscribe("contacts")
        await within(live(client, stream))
        reading = asyncio.create_task(anext(stream, None))
        await client.close()
        assert await within(reading, 5) is None

    asyncio.run(scenario())


def test_an_event_over_2_mib_is_delivered_and_the_stream_goes_on(server, signup) -> None:
    ann = signup("Ann")

    async def scenario() -> None:
        async with Client(server.url, ann.token) as client:
            documents = client.subscribe("documents")
            await within(live(client, documents))
            big = await client.post("/documents", {"title": "big", "body": "\u3042" * 690_000})  # 2 MB of UTF-8
            small = await client.post("/documents", {"title": "small"})
            assert (await next_event(documents)).data["body"] == big["body"]
            assert (await next_event(documents)).id == small["id"]

    asyncio.run(scenario())


def test_a_consumer_that_falls_behind_holds_up_no_other_and_misses_nothing(server, signup) -> None:
    ann = signup("Ann")

    async def scenario() -> None:
        async with Client(server.url, ann.token, queue_size=3) as client:
            documents, contacts = await documents_and_contacts(client)
            made = [(await client.post("/documents", {"title": f"d{n}"}))["id"] for n in range(10)]
            contact = await client.post("/contacts", {"name": "not held up"})
            assert (await next_event(contacts)).id == contact["id"]  # while documents is 7 behind
            assert [(await next_event(documents)).id for _ in made] == made  # then every one, once, in order
            last = await client.post("/documents", {"title": "after"})
            assert (await next_event(documents)).id == last["id"]
            await documents.close()  # closing a stream, even a full one, never raises
            assert await within(anext(documents, None)) is None

    asyncio.run(scenario())


def test_a_logout_ends_every_stream_and_every_later_call_with_session_ended(server, signup) -> None:
    ann = signup("Ann")

    async def scenario() -> None:
        async with Client(server.url, ann.token, queue_size=2) as client:
            documents, contacts = client.subscribe("documents"), client.subscribe("contacts")
            await within(live(client, documents))
            for n in range(4):  # documents is full and paused when the session ends
                await client.post("/documents", {"title": f"d{n}"})
            await client.post("/auth/logout")
            with pytest.raises(SessionEnded):
                await next_event(contacts)
            with pytest.raises(SessionEnded):
                while True:
                    await next_event(documents)
            with pytest.raises(SessionEnded):
                await within(client.send_chat("0123456789abcdef01234567", "too late"), 5)

    asyncio.run(scenario())


def test_a_refused_token_is_session_ended_with_first_frame_auth_too(server) -> None:
    async def scenario() -> None:
        async with Client(server.url, "not-a-token", first_frame_auth=True) as client:
            with pytest.raises(SessionEnded):
                await next_event(client.subscribe("contacts"))

    asyncio.run(scenario())


@pytest.mark.parametrize("url", ["127.0.0.1:8000", "ftp://127.0.0.1", "http://"])
def test_a_url_that_is_not_http_is_refused_at_once(url: str) -> None:
    with pytest.raises(ValueError):
        Client(url, "token")


def test_a_ping_lost_while_the_server_was_frozen_does_not_take_the_next_pong(server, signup) -> None:
    ann = signup("Ann")

    async def scenario() -> None:
        async with Client(server.url, ann.token) as client:
            await within(client.ping())
            group = os.getpgid(server.process.pid)
            os.killpg(group, signal.SIGSTOP)
            try:
                with pytest.raises(TimeoutError):
                    await client.ping(timeout=1)
            finally:
                os.killpg(group, signal.SIGCONT)
            await within(client.ping())

    asyncio.run(scenario())


def test_a_reconnect_with_a_hundred_subscriptions_and_thirty_pending_sends_resumes_them_all(server, signup) -> None:
    ann = signup("Ann")

    async def scenario() -> None:
        async with Client(server.url, ann.token) as client:
            documents = [await client.post("/documents", {"title": f"d{n}"}) for n in range(100)]
            streams = [client.subscribe("documents", {"id": doc["id"]}) for doc in documents]  # the most a socket takes
            room = await client.post("/rooms", {"name": "burst"})
            await within(live(client, streams[-1]))
            await blocking(server.stop)
            sends = [asyncio.create_task(client.send_chat(room["id"], f"m{n}", client_id=f"m{n}")) for n in range(30)]
            await blocking(server.start)
            acked = await within(asyncio.gather(*sends), 60)  # each stored and acknowledged once
            assert sorted(message["client_id"] for message in acked) == sorted(f"m{n}" for n in range(30))
            await within(asyncio.gather(*(live(client, stream) for stream in streams)), 60)
            changed = await client.patch(f"/documents/{documents[99]['id']}", {"title": "still followed"})
            assert (await next_event(streams[99])).data["title"] == changed["title"]

    asyncio.run(scenario())
