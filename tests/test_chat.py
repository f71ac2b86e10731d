"""Chat: rooms, live delivery to members only, idempotent sends, unread counts, history pages."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from bson import ObjectId

from .feed import Feed
from .harness import Server


def room_of(creator, *members, name: str = "general") -> dict:
    answer = creator.post("/rooms", json={"name": name, "members": [m.email for m in members]})
    assert answer.status_code == 201, answer.text
    return answer.json()


def say(account, room: dict, text: str, client_id: str | None = None) -> dict:
    payload = {"text": text, **({"client_id": client_id} if client_id else {})}
    answer = account.post(f"/rooms/{room['id']}/messages", json=payload)
    assert answer.status_code == 201, answer.text
    return answer.json()


def test_a_room_lists_its_members_and_its_creator(signup) -> None:
    ann, bob = signup("Ann"), signup("Bob")
    room = room_of(ann, bob, name="team")
    assert room["name"] == "team"
    assert room["members"] == [{"id": ann.id, "name": "Ann"}, {"id": bob.id, "name": "Bob"}]
    assert room["created_by"] == {"id": ann.id, "name": "Ann"} and room["created_at"].endswith("Z")


def test_a_message_has_its_author_room_and_client_id(signup) -> None:
    ann = signup("Ann")
    room = room_of(ann)
    message = say(ann, room, "  hello\n", client_id="c-1")
    assert set(message) == {"id", "room", "author", "text", "client_id", "created_at"}
    assert (message["room"], message["author"], message["text"], message["client_id"]) == (
        room["id"],
        {"id": ann.id, "name": "Ann"},
        "  hello\n",
        "c-1",
    )


def test_messages_reach_every_members_subscription_and_nobody_else(server, signup) -> None:
    ann, bob, eve = signup("Ann"), signup("Bob"), signup("Eve")
    room = room_of(ann, bob)
    other = room_of(eve)
    with Feed(server, ann) as a, Feed(server, bob) as b, Feed(server, eve) as e:
        a.subscribe("r", "room", {"room": room["id"]})
        b.subscribe("r", "room", {"room": room["id"]})
        e.send(type="subscribe", id="spy", stream="room", params={"room": room["id"]})
        assert e.expect("error", id="spy")["code"] == "not_found"
        e.subscribe("own", "room", {"room": other["id"]})
        message = say(bob, room, "hi all")
        for feed in (a, b):
            event = feed.event("r")
            assert (event["stream"], event["op"], event["id"], event["data"]) == (
                "room",
                "insert",
                message["id"],
                message,
            )
        mine = say(eve, other, "alone")
        assert e.event("own")["id"] == mine["id"]  # bob's message never came first


def test_one_subscription_without_params_follows_every_room_the_caller_is_in(server, signup) -> None:
    ann, bob, eve = signup("Ann"), signup("Bob"), signup("Eve")
    with Feed(server, bob) as b:
        b.subscribe("all", "room")
        room = room_of(ann, bob, name="new")  # created after the subscription: bob enters it
        enter = b.event("all")
        assert (enter["op"], enter["id"], enter["data"]["name"]) == ("enter", room["id"], "new")
        room_of(eve, name="not bob's")
        say(eve, room_of(eve, ann), "not for bob")
        message = say(ann, room, "hello bob")
        event = b.event("all")
        assert (event["op"], event["id"], event["data"]) == ("insert", message["id"], message)
        ann.delete(f"/rooms/{room['id']}/members/{bob.id}")
        leave = b.event("all")
        assert (leave["op"], leave["id"], leave["data"]) == ("leave", room["id"], None)


def test_chat_send_over_the_websocket_is_acked_and_delivered(server, signup) -> None:
    ann, bob = signup("Ann"), signup("Bob")
    room = room_of(ann, bob)
    with Feed(server, ann) as a, Feed(server, bob) as b:
        b.subscribe("r", "room", {"room": room["id"]})
        a.send(type="chat.send", room=room["id"], text="over ws", client_id="w-1")
        ack = a.expect("ack", client_id="w-1")
        assert ack["message"]["text"] == "over ws" and ack["message"]["author"]["id"] == ann.id
        assert b.event("r")["data"] == ack["message"]
        a.send(type="chat.send", room=room["id"], text="over ws", client_id="w-1")
        assert a.expect("ack", client_id="w-1")["message"]["id"] == ack["message"]["id"]
        a.send(type="chat.send", room=room["id"], text="", client_id="w-2")
        error = a.expect("error")
        assert (error["code"], error["client_id"]) == ("validation_error", "w-2")
    assert [m["id"] for m in ann.get(f"/rooms/{room['id']}/messages").json()["items"]] == [ack["message"]["id"]]


def test_concurrent_retries_with_one_client_id_store_one_message(signup, db) -> None:
    ann = signup("Ann")
    room = room_of(ann)

    def send(_: int) -> tuple[int, str]:
        answer = ann.post(f"/rooms/{room['id']}/messages", json={"text": "once", "client_id": "retry-me"})
        return answer.status_code, answer.json()["id"]

    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(send, range(10)))
    assert sorted(status for status, _ in results) == [200] * 9 + [201]
    assert len({message_id for _, message_id in results}) == 1
    assert db.messages.count_documents({"room": ObjectId(room["id"])}) == 1


def test_another_members_client_id_is_just_a_different_key(signup, db) -> None:
    ann, bob = signup("Ann"), signup("Bob")
    room = room_of(ann, bob)
    bobs = say(bob, room, "Bob's words", client_id="shared-id")
    anns = ann.post(f"/rooms/{room['id']}/messages", json={"text": "Ann's words", "client_id": "shared-id"})
    assert anns.status_code == 201  # stored, not answered with Bob's message
    assert (anns.json()["text"], anns.json()["author"]["id"]) == ("Ann's words", ann.id)
    assert anns.json()["id"] != bobs["id"] and db.messages.count_documents({"room": ObjectId(room["id"])}) == 2
    retry = ann.post(f"/rooms/{room['id']}/messages", json={"text": "Ann's words", "client_id": "shared-id"})
    assert retry.status_code == 200 and retry.json()["id"] == anns.json()["id"]


def test_the_index_of_an_earlier_version_is_replaced_at_start(server, mongo_url, db) -> None:
    db.messages.drop_index("client_id_per_author")
    db.messages.delete_many({"client_id": {"$exists": True}})  # the old index could not hold two members' ids
    db.messages.create_index([("room", 1), ("client_id", 1)], unique=True, name="client_id_unique",
                             partialFilterExpression={"client_id": {"$type": "string"}})  # fmt: skip
    later = Server(mongo_url, server.db_name).start()
    later.stop()
    names = set(db.messages.index_information())
    assert "client_id_per_author" in names and "client_id_unique" not in names


def test_unread_counts_stop_at_100_and_say_there_are_more(signup, db) -> None:
    ann, bob = signup("Ann"), signup("Bob")
    room = room_of(ann, bob)
    now = datetime.now(UTC)
    author = {"_id": ObjectId(ann.id), "name": "Ann"}
    access = [ObjectId(ann.id), ObjectId(bob.id)]
    db.messages.insert_many([{"room": ObjectId(room["id"]), "author": author, "text": f"m{i}", "access": access,
                              "created_at": now} for i in range(150)])  # fmt: skip
    listed = next(r for r in bob.get("/rooms").json()["items"] if r["id"] == room["id"])
    assert (listed["unread"], listed["unread_capped"]) == (100, True)
    assert listed["last_message"]["text"] == "m149"
    mine = next(r for r in ann.get("/rooms").json()["items"] if r["id"] == room["id"])
    assert (mine["unread"], mine["unread_capped"]) == (0, False)


def test_unread_counts_follow_read_markers_per_user(signup) -> None:
    ann, bob = signup("Ann"), signup("Bob")
    room = room_of(ann, bob)
    sent = [say(ann, room, f"m{i}") for i in range(3)]

    def listed(account) -> dict:
        return next(r for r in account.get("/rooms").json()["items"] if r["id"] == room["id"])

    assert (listed(ann)["unread"], listed(bob)["unread"]) == (0, 3)
    assert listed(bob)["last_message"] == sent[-1]
    assert bob.post(f"/rooms/{room['id']}/read", json={"message_id": sent[1]["id"]}).status_code == 204
    assert listed(bob)["unread"] == 1
    bob_reply = say(bob, room, "caught up")
    assert (listed(ann)["unread"], listed(bob)["unread"]) == (1, 0)
    assert listed(ann)["last_message"] == bob_reply
    bob.post(f"/rooms/{room['id']}/read", json={"message_id": sent[0]["id"]})  # a marker never moves back
    assert listed(bob)["unread"] == 0


def test_each_listed_room_counts_unread_against_its_own_read_marker(signup) -> None:
    ann, bob = signup("Ann"), signup("Bob")
    rooms = [room_of(ann, bob, name=f"room {i}") for i in range(3)]
    sent = {room["id"]: [say(ann, room, f"{room['name']} #{n}") for n in range(3)] for room in rooms}
    for read_up_to, room in enumerate(rooms):  # room 0: read the first; room 1: the second; room 2: all
        bob.post(f"/rooms/{room['id']}/read", json={"message_id": sent[room["id"]][read_up_to]["id"]})
    listed = {r["id"]: r for r in bob.get("/rooms").json()["items"]}
    assert [listed[room["id"]]["unread"] for room in rooms] == [2, 1, 0]
    assert [listed[room["id"]]["last_message"]["text"] for room in rooms] == ["room 0 #2", "room 1 #2", "room 2 #2"]


def test_history_pages_newest_first_with_no_duplicates_or_holes(signup) -> None:
    ann = signup("Ann")
    room = room_of(ann)
    sent = [say(ann, room, f"n{i}")["id"] for i in range(45)]
    seen, after = [], None
    while True:
        page = ann.get(f"/rooms/{room['id']}/messages", params={"limit": 20, **({"after": after} if after else {})})
        seen += [m["id"] for m in page.json()["items"]]
        after = page.json()["next"]
        if after is None:
            break
    assert seen == sent[::-1]


def test_a_removed_member_stops_receiving_at_once(server, signup) -> None:
    ann, bob = signup("Ann"), signup("Bob")
    room = room_of(ann, bob)
    with Feed(server, bob) as b:
        b.subscribe("r", "room", {"room": room["id"]})
        say(ann, room, "before")
        assert b.event("r")["data"]["text"] == "before"
        removed = ann.delete(f"/rooms/{room['id']}/members/{bob.id}")
        assert removed.status_code == 200 and [m["id"] for m in removed.json()["members"]] == [ann.id]
        leave = b.event("r")
        assert (leave["op"], leave["id"], leave["data"]) == ("leave", room["id"], None)
        say(ann, room, "after")
        b.subscribe("d", "documents")
        own = bob.post("/documents", json={"title": "elsewhere"}).json()
        assert b.event()["id"] == own["id"]  # "after" never reached him
    assert bob.get(f"/rooms/{room['id']}/messages").status_code == 404


def test_members_join_and_leave(signup) -> None:
    ann, bob, cat = signup("Ann"), signup("Bob"), signup("Cat")
    room = room_of(ann, bob)
    added = bob.post(f"/rooms/{room['id']}/members", json={"email": cat.email})
    assert added.status_code == 200 and {m["name"] for m in added.json()["members"]} == {"Ann", "Bob", "Cat"}
    assert bob.delete(f"/rooms/{room['id']}/members/{cat.id}").status_code == 403
    assert cat.delete(f"/rooms/{room['id']}/members/{cat.id}").status_code == 200
    assert cat.get(f"/rooms/{room['id']}/messages").status_code == 404
    invited = bob.post(f"/rooms/{room['id']}/members", json={"email": "nobody@example.com"})
    assert invited.status_code == 202 and invited.json() == {"invite": {**invited.json()["invite"], "pending": True}}


def test_resume_returns_exactly_the_missed_messages(server, signup) -> None:
    ann, bob = signup("Ann"), signup("Bob")
    room = room_of(ann, bob)
    with Feed(server, bob) as b:
        b.subscribe("r", "room", {"room": room["id"]})
        say(ann, room, "seen")
        cursor = b.event("r")["cursor"]
    missed = [say(ann, room, f"while away {i}")["id"] for i in range(4)]
    with Feed(server, bob) as b:
        assert [e["id"] for e in b.subscribe("r", "room", {"room": room["id"]}, since=cursor)] == missed


def test_typing_reaches_the_other_members_only(server, signup) -> None:
    ann, bob = signup("Ann"), signup("Bob")
    room = room_of(ann, bob)
    with Feed(server, ann) as a, Feed(server, bob) as b:
        a.subscribe("r", "room", {"room": room["id"]})
        b.subscribe("r", "room", {"room": room["id"]})
        a.send(type="chat.typing", room=room["id"])
        typing = b.event("r")
        assert (typing["op"], typing["data"]) == ("typing", {"room": room["id"], "user": {"id": ann.id, "name": "Ann"}})
        message = say(ann, room, "done typing")
        assert a.event("r")["id"] == message["id"]  # Ann was not told about her own typing


def test_bad_chat_input_is_refused_and_stores_nothing(signup, db) -> None:
    ann, bob, eve = signup("Ann"), signup("Bob"), signup("Eve")
    room, other = room_of(ann, bob), room_of(eve)
    elsewhere = say(eve, other, "not yours")
    cases = [
        ("post", f"/rooms/{room['id']}/messages", {"text": ""}, 422),
        ("post", f"/rooms/{room['id']}/messages", {"text": "   "}, 422),
        ("post", f"/rooms/{room['id']}/messages", {"text": "x" * 4001}, 422),
        ("post", f"/rooms/{room['id']}/messages", {"text": "x", "$set": 1}, 422),
        ("post", f"/rooms/{ObjectId()}/messages", {"text": "x"}, 404),
        ("post", f"/rooms/{other['id']}/messages", {"text": "x"}, 404),
        ("get", f"/rooms/{other['id']}/messages", None, 404),
        ("post", f"/rooms/{other['id']}/members", {"email": ann.email}, 404),
        ("delete", f"/rooms/{other['id']}/members/{eve.id}", None, 404),
        ("post", f"/rooms/{other['id']}/read", {"message_id": elsewhere["id"]}, 404),
        ("post", f"/rooms/{room['id']}/read", {"message_id": elsewhere["id"]}, 422),
        ("post", f"/rooms/{room['id']}/read", {"message_id": "zzz"}, 422),
        ("post", "/rooms", {"members": []}, 422),
    ]
    for method, path, payload, status in cases:
        answer = ann.request(method, path, json=payload)
        assert answer.status_code == status, (path, payload, answer.text)
    assert db.messages.count_documents({"room": ObjectId(room["id"])}) == 0
    assert say(ann, room, "x" * 4000)["text"] == "x" * 4000


def test_a_room_holds_at_most_ten_thousand_members(signup, db) -> None:
    ann, bob, cat = signup("Ann"), signup("Bob"), signup("Cat")
    room = ann.post("/rooms", json={"name": "all hands", "members": [bob.email]}).json()
    others = [{"_id": ObjectId(), "name": f"m{i}"} for i in range(9_998)]
    db.rooms.update_one({"_id": ObjectId(room["id"])}, {"$push": {"members": {"$each": others},
                        "access": {"$each": [o["_id"] for o in others]}}})  # fmt: skip
    refused = ann.post(f"/rooms/{room['id']}/members", json={"email": cat.email})
    assert refused.status_code == 409 and "10,000" in refused.json()["error"]["message"]
    assert ann.post(f"/rooms/{room['id']}/members", json={"email": bob.email}).status_code == 200  # already in
    assert cat.get(f"/rooms/{room['id']}").status_code == 404
