"""The websocket: authentication, streams, authorization per event, presence, online count."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bson import ObjectId

from .feed import Feed
from .harness import Account, Server, wait_for


def test_a_header_token_makes_the_connection_ready(server, signup) -> None:
    ann = signup("Ann")
    with Feed(server, ann) as feed:
        assert feed.ready == {"type": "ready", "user": ann.user}
        feed.send(type="ping")
        feed.expect("pong")


def test_a_browser_authenticates_with_a_first_frame(server, signup) -> None:
    ann = signup("Ann")
    with Feed(server) as feed:
        feed.ws.send('{"type": "auth", "token": "\\ud800"}')  # valid JSON, not a string any token can be
        assert feed.expect("error")["code"] in ("unauthorized", "bad_request")
        feed.send(type="subscribe", id="s1", stream="contacts")
        assert feed.expect("error")["code"] == "unauthorized"
        feed.send(type="auth", token="wrong")
        assert feed.expect("error")["code"] == "unauthorized"
        feed.send(type="auth", token=ann.token)
        assert feed.expect("ready")["user"] == ann.user


def test_a_bad_header_token_is_closed_with_4001(server) -> None:
    with Feed(server, headers={"Authorization": "Bearer not-a-token"}) as feed:
        assert feed.closed_with() == 4001


def test_contact_changes_reach_their_owner_as_insert_update_delete(server, signup) -> None:
    ann = signup("Ann")
    with Feed(server, ann) as feed:
        assert feed.subscribe("c", "contacts") == []
        contact = ann.post("/contacts", json={"name": "Grace"}).json()
        inserted = feed.event("c")
        assert (inserted["stream"], inserted["op"], inserted["id"], inserted["data"]) == (
            "contacts",
            "insert",
            contact["id"],
            contact,
        )
        assert isinstance(inserted["cursor"], str) and inserted["cursor"]
        changed = ann.patch(f"/contacts/{contact['id']}", json={"company": "Navy"}).json()
        updated = feed.event("c")
        assert (updated["op"], updated["data"]) == ("update", changed)
        ann.delete(f"/contacts/{contact['id']}")
        deleted = feed.event("c")
        assert (deleted["op"], deleted["id"], deleted["data"]) == ("delete", contact["id"], None)
        assert len({inserted["cursor"], updated["cursor"], deleted["cursor"]}) == 3


def test_a_write_made_straight_in_mongodb_reaches_subscribers(server, signup, db) -> None:
    ann = signup("Ann")
    with Feed(server, ann) as feed:
        feed.subscribe("c", "contacts")
        stamp = datetime.now(UTC)
        inserted = db.contacts.insert_one(
            {"owner": ObjectId(ann.id), "name": "From the shell", "tags": [], "created_at": stamp, "updated_at": stamp}
        ).inserted_id
        event = feed.event("c")
        assert (event["op"], event["id"], event["data"]["name"]) == ("insert", str(inserted), "From the shell")


def test_one_user_never_receives_another_users_events(server, signup) -> None:
    ann, bob = signup("Ann"), signup("Bob")
    with Feed(server, bob) as feed:
        feed.subscribe("c", "contacts")
        feed.subscribe("d", "documents")
        ann.post("/contacts", json={"name": "Ann's secret"})
        ann.post("/documents", json={"title": "Ann's plan"})
        mine = bob.post("/contacts", json={"name": "Bob's own"}).json()
        # One change stream delivers in commit order: had Ann's writes been routed here, they would come first.
        event = feed.event()
        assert (event["sub"], event["id"]) == ("c", mine["id"])


def test_document_events_cover_every_op_and_access_changes(server, signup) -> None:
    ann, bob = signup("Ann"), signup("Bob")
    with Feed(server, ann) as owner_feed, Feed(server, bob) as bob_feed:
        owner_feed.subscribe("d", "documents")
        bob_feed.subscribe("d", "documents")
        doc = ann.post("/documents", json={"title": "Shared"}).json()
        assert owner_feed.event("d")["op"] == "insert"
        shared = ann.post(f"/documents/{doc['id']}/collaborators", json={"email": bob.email, "role": "viewer"}).json()
        assert owner_feed.event("d")["op"] == "update"
        enter = bob_feed.event("d")
        assert (enter["op"], enter["id"], enter["data"]) == ("enter", doc["id"], shared)
        edited = ann.patch(f"/documents/{doc['id']}", json={"body": "v2"}).json()
        for feed in (owner_feed, bob_feed):
            event = feed.event("d")
            assert (event["op"], event["data"]) == ("update", edited)
        ann.delete(f"/documents/{doc['id']}/collaborators/{bob.id}")
        assert owner_feed.event("d")["op"] == "update"
        leave = bob_feed.event("d")
        assert (leave["op"], leave["id"], leave["data"]) == ("leave", doc["id"], None)
        ann.patch(f"/documents/{doc['id']}", json={"body": "after bob left"})
        owner_feed.event("d")
        own = bob.post("/documents", json={"title": "Bob's"}).json()
        assert bob_feed.event("d")["id"] == own["id"]  # nothing about the document he left came first
        ann.delete(f"/documents/{doc['id']}")
        deleted = owner_feed.event("d")
        assert (deleted["op"], deleted["data"]) == ("delete", None)


def test_a_document_subscription_carries_only_that_document(server, signup) -> None:
    ann = signup("Ann")
    one = ann.post("/documents", json={"title": "one"}).json()
    two = ann.post("/documents", json={"title": "two"}).json()
    with Feed(server, ann) as feed:
        feed.subscribe("one", "documents", {"id": one["id"]})
        ann.patch(f"/documents/{two['id']}", json={"body": "x"})
        ann.patch(f"/documents/{one['id']}", json={"body": "y"})
        event = feed.event("one")
        assert (event["id"], event["data"]["body"]) == (one["id"], "y")


def test_a_reader_that_asks_for_some_fields_gets_only_those_live_and_replayed(server, signup) -> None:
    ann, bob = signup("Ann"), signup("Bob")
    doc = ann.post("/documents", json={"title": "Roster"}).json()
    ann.post(f"/documents/{doc['id']}/collaborators", json={"email": bob.email, "role": "viewer"})
    slim = {"id": doc["id"], "fields": ["title", "version"]}
    with Feed(server, bob) as narrow, Feed(server, ann) as whole:
        narrow.subscribe("d", "documents", slim)
        whole.subscribe("d", "documents", {"id": doc["id"]})
        saved = ann.patch(f"/documents/{doc['id']}", json={"body": "v2"}).json()
        event = narrow.event("d")
        assert event["data"] == {"id": doc["id"], "title": "Roster", "version": 2}
        assert whole.event("d")["data"] == saved  # the same event, whole, for a subscriber that did not narrow it
        cursor = event["cursor"]
    ann.patch(f"/documents/{doc['id']}", json={"title": "Renamed"})
    with Feed(server, bob) as again:
        replayed = again.subscribe("d", "documents", slim, since=cursor)
        assert [e["data"] for e in replayed] == [{"id": doc["id"], "title": "Renamed", "version": 3}]


def test_fields_must_name_fields_of_the_stream(server, signup) -> None:
    ann = signup("Ann")
    doc = ann.post("/documents", json={"title": "x"}).json()
    with Feed(server, ann) as feed:
        for sub, stream, params in (
            ("a", "documents", {"id": doc["id"], "fields": ["title", "password"]}),
            ("b", "documents", {"fields": "title"}),
            ("c", "documents", {"fields": []}),
            ("d", "documents", {"fields": [{"$gt": ""}]}),
            ("e", "contacts", {"fields": ["name"]}),
            ("f", "documents", {"fields": None}),
            ("g", "online", {"fields": None}),
        ):
            feed.send(type="subscribe", id=sub, stream=stream, params=params)
            assert feed.expect("error", id=sub)["code"] == "bad_request"
        assert feed.subscribe("ok", "documents", {"fields": ["title"]}) == []


def test_subscribing_to_what_you_may_not_see_is_not_found(server, signup) -> None:
    ann, bob = signup("Ann"), signup("Bob")
    doc = ann.post("/documents", json={"title": "private"}).json()
    with Feed(server, bob) as feed:
        for stream, params in (("documents", {"id": doc["id"]}), ("presence", {"document": doc["id"]})):
            feed.send(type="subscribe", id="x", stream=stream, params=params)
            error = feed.expect("error")
            assert (error["id"], error["code"]) == ("x", "not_found")
        feed.send(type="subscribe", id="y", stream="nonsense")
        assert feed.expect("error", id="y")["code"] == "bad_request"
        feed.send(type="subscribe", id="z", stream="contacts", params={"owner": ann.id})
        assert feed.expect("error", id="z")["code"] == "bad_request"


def test_presence_shows_who_views_and_edits_and_clears_on_disconnect(server, signup) -> None:
    ann, bob = signup("Ann"), signup("Bob")
    doc = ann.post("/documents", json={"title": "Live"}).json()
    ann.post(f"/documents/{doc['id']}/collaborators", json={"email": bob.email, "role": "editor"})
    with Feed(server, ann) as watcher:
        assert watcher.subscribe("p", "presence", {"document": doc["id"]}) == []
        current = watcher.event("p")  # the state on subscribe
        assert current["data"] == {"document": doc["id"], "viewing": [], "editing": []}
        with Feed(server, bob) as editor:
            editor.send(type="presence", document=doc["id"], state="viewing")
            seen = watcher.event("p")
            assert seen["data"] == {"document": doc["id"], "viewing": [{"id": bob.id, "name": "Bob"}], "editing": []}
            editor.send(type="presence", document=doc["id"], state="editing")
            assert watcher.event("p")["data"]["editing"] == [{"id": bob.id, "name": "Bob"}]
            assert ann.get(f"/documents/{doc['id']}/presence").json() == {
                "viewing": [],
                "editing": [{"id": bob.id, "name": "Bob"}],
            }
        cleared = watcher.event("p")
        assert cleared["data"] == {"document": doc["id"], "viewing": [], "editing": []}
    assert ann.get(f"/documents/{doc['id']}/presence").json() == {"viewing": [], "editing": []}


def test_a_viewer_cannot_announce_editing(server, signup) -> None:
    ann, vi = signup("Ann"), signup("Vi")
    doc = ann.post("/documents", json={"title": "Read only"}).json()
    ann.post(f"/documents/{doc['id']}/collaborators", json={"email": vi.email, "role": "viewer"})
    with Feed(server, vi) as feed:
        feed.send(type="presence", document=doc["id"], state="editing")
        assert feed.expect("error")["code"] == "forbidden"
        feed.send(type="presence", document=doc["id"], state="dancing")
        assert feed.expect("error")["code"] == "bad_request"


def test_the_online_count_follows_distinct_users(server, signup) -> None:
    ann, bob = signup("Ann"), signup("Bob")
    with Feed(server, ann) as watcher:
        watcher.subscribe("o", "online")
        base = watcher.event("o")["data"]["count"]
        assert base >= 1
        with Feed(server, bob):
            assert watcher.event("o")["data"] == {"count": base + 1}
            # a second tab of the same user is not a new user
            with Feed(server, bob), Feed(server, ann) as again:
                again.subscribe("o", "online")
                assert again.event("o")["data"] == {"count": base + 1}
        assert watcher.event("o")["data"] == {"count": base}


def test_unsubscribe_stops_the_events(server, signup) -> None:
    ann = signup("Ann")
    with Feed(server, ann) as feed:
        feed.subscribe("a", "contacts")
        feed.subscribe("b", "documents")
        feed.send(type="unsubscribe", id="a")
        feed.expect("unsubscribed", id="a")
        ann.post("/contacts", json={"name": "unseen"})
        doc = ann.post("/documents", json={"title": "seen"}).json()
        assert feed.event()["id"] == doc["id"]


def test_garbage_frames_get_errors_and_the_connection_stays_up(server, signup) -> None:
    ann = signup("Ann")
    with Feed(server, ann) as feed:
        deep = '{"type": "ping", "x": ' + "[" * 3000 + "]" * 3000 + "}"
        for garbage in ("not json", "[1,2]", '{"no": "type"}', '{"type": "launch"}', '"string"', deep,
                        '{"type": []}', '{"type": {"a": 1}}', '{"type": "unsubscribe", "id": [1]}',
                        '{"type": "bogus", "id": "\\ud800"}', '{"type": "chat.send", "room": "x", "text": "\\udfff"}',
                        '{"type": "subscribe", "id": "s", "stream": "contacts", "params": {"\\ud800": 1}}',
                        ):  # fmt: skip
            feed.ws.send(garbage)
            assert feed.expect("error")["code"] == "bad_request", garbage
        feed.send(type="subscribe", id="s", stream="contacts")
        feed.expect("subscribed", id="s")
        feed.send(type="subscribe", id="s", stream="contacts")
        assert feed.expect("error", id="s")["code"] == "conflict"
        feed.send(type="ping")
        feed.expect("pong")


def test_presence_of_a_closed_connection_is_gone_from_mongodb(server, signup, db) -> None:
    ann = signup("Ann")
    doc = ann.post("/documents", json={"title": "x"}).json()
    with Feed(server, ann) as feed:
        feed.send(type="presence", document=doc["id"], state="viewing")
        wait_for(lambda: db.presence.count_documents({"document": ObjectId(doc["id"])}) == 1, what="presence stored")
    wait_for(lambda: db.presence.count_documents({"document": ObjectId(doc["id"])}) == 0, what="presence removed")
    wait_for(lambda: db.connections.count_documents({"user": ObjectId(ann.id)}) == 0, what="connection removed")


def test_presence_without_params_covers_every_readable_document_and_no_other(server, signup) -> None:
    ann, bob = signup("Ann"), signup("Bob")
    shared = ann.post("/documents", json={"title": "shared"}).json()
    private = bob.post("/documents", json={"title": "bob's own"}).json()
    ann.post(f"/documents/{shared['id']}/collaborators", json={"email": bob.email, "role": "viewer"})
    with Feed(server, ann) as watcher, Feed(server, bob) as viewer:
        assert watcher.subscribe("p", "presence") == []
        viewer.send(type="presence", document=private["id"], state="viewing")  # not Ann's to see
        viewer.send(type="presence", document=shared["id"], state="viewing")
        event = watcher.event("p")  # the private document's presence never came first
        assert event["id"] == shared["id"]
        assert event["data"] == {"document": shared["id"], "viewing": [{"id": bob.id, "name": "Bob"}], "editing": []}


def test_a_collaborator_removed_earlier_gets_no_presence_from_an_instance_started_later(
    server, signup, mongo_url
) -> None:
    ann, bob = signup("Ann"), signup("Bob")
    doc = ann.post("/documents", json={"title": "Once shared"}).json()
    ann.post(f"/documents/{doc['id']}/collaborators", json={"email": bob.email, "role": "editor"})
    with Feed(server, ann) as ann_feed:
        ann_feed.send(type="presence", document=doc["id"], state="viewing")
        ann_feed.send(type="ping")
        ann_feed.expect("pong")
        ann.delete(f"/documents/{doc['id']}/collaborators/{bob.id}")
        later = Server(mongo_url, server.db_name).start()  # reads the presence records as they are now
        try:
            with Feed(later, bob) as bob_feed:
                bob_feed.subscribe("p", "presence")
                bob_feed.subscribe("d", "documents")
                ann_feed.send(type="presence", document=doc["id"], state="editing")
                other = ann.post("/documents", json={"title": "Shared after"}).json()
                ann.post(f"/documents/{other['id']}/collaborators", json={"email": bob.email, "role": "viewer"})
                # Changes reach an instance in commit order: once Bob has the later `enter`, the earlier
                # presence changes have been routed, and none of them reached him.
                first = bob_feed.event()
                assert (first["sub"], first["op"], first["id"]) == ("d", "enter", other["id"]), first
        finally:
            later.stop()


def test_a_logout_closes_the_sockets_of_that_session_and_no_other(server, signup) -> None:
    ann = signup("Ann")
    again = Account(base_url=server.url, timeout=30)
    token = again.post("/auth/login", json={"email": ann.email, "password": ann.password}).json()["token"]
    again.headers["Authorization"], again.token = f"Bearer {token}", token
    with Feed(server, ann) as first, Feed(server, ann) as second, Feed(server, again) as other:
        first.subscribe("c", "contacts")
        assert ann.post("/auth/logout").status_code == 204
        code, reason = first.closed(10)
        assert code == 4001 and "session ended" in reason
        assert second.closed(10)[0] == 4001
        other.send(type="ping")
        other.expect("pong")  # another login of the same user is not touched
    again.close()


def test_a_session_deleted_in_the_shell_closes_its_socket(server, signup, db) -> None:
    ann = signup("Ann")
    with Feed(server, ann) as feed:
        db.sessions.delete_many({"user": ObjectId(ann.id)})
        assert feed.closed(10)[0] == 4001


def test_a_socket_closes_when_its_session_expires(server, signup, db) -> None:
    ann = signup("Ann")
    soon = datetime.now(UTC) + timedelta(seconds=2)
    db.sessions.update_many({"user": ObjectId(ann.id)}, {"$set": {"expires_at": soon}})
    with Feed(server, ann) as feed:
        code, reason = feed.closed(10)
        assert (code, reason) == (4001, "the session expired")


def test_a_logout_on_one_instance_closes_the_socket_on_another(server, signup, mongo_url) -> None:
    ann = signup("Ann")
    other = Server(mongo_url, server.db_name).start()
    try:
        with Feed(other, ann) as feed:
            feed.subscribe("c", "contacts")
            assert ann.post("/auth/logout").status_code == 204  # on the first instance
            assert feed.closed(5)[0] == 4001
    finally:
        other.stop()


def test_an_expiry_moved_into_the_past_in_the_shell_ends_the_session_at_once(server, signup, db) -> None:
    ann = signup("Ann")
    assert ann.get("/auth/me").status_code == 200  # cached
    with Feed(server, ann) as feed:
        past = datetime.now(UTC) - timedelta(seconds=1)
        db.sessions.update_many({"user": ObjectId(ann.id)}, {"$set": {"expires_at": past}})
        assert feed.closed(5)[0] == 4001
    assert ann.get("/auth/me").status_code == 401


def test_dropping_the_sessions_collection_signs_everyone_out(server, signup, db) -> None:
    ann, bob = signup("Ann"), signup("Bob")
    with Feed(server, ann) as first, Feed(server, bob) as second:
        db.sessions.drop()
        assert first.closed(5)[0] == 4001 and second.closed(5)[0] == 4001
    assert ann.get("/auth/me").status_code == 401 and bob.get("/auth/me").status_code == 401
    assert signup("Cat").get("/auth/me").status_code == 200  # and signing in works again


def test_a_session_whose_expiry_is_moved_later_in_the_shell_keeps_its_socket(server, signup, db) -> None:
    ann = signup("Ann")
    with Feed(server, ann) as feed:
        feed.subscribe("c", "contacts")
        later = datetime.now(UTC) + timedelta(days=60)
        db.sessions.update_many({"user": ObjectId(ann.id)}, {"$set": {"expires_at": later, "note": "extended"}})
        created = ann.post("/contacts", json={"name": "after the update"}).json()["id"]
        assert feed.expect("event", sub="c")["id"] == created  # still open, still delivering
