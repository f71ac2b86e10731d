"""Sessions people can see (where and when they were used) and end (their sockets close at once)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from bson import ObjectId

from .feed import Feed


def test_sessions_are_listed_newest_first_with_where_they_were_used(server, signup) -> None:
    ann = signup("Ann")
    other = httpx.post(
        f"{server.url}/auth/login", json={"email": ann.email, "password": ann.password},
        headers={"User-Agent": "Phone/1.0"},
    ).json()["token"]  # fmt: skip
    listed = ann.get("/auth/sessions").json()
    assert listed["next"] is None and len(listed["items"]) == 2
    newest, mine = listed["items"]
    assert (newest["current"], newest["user_agent"], newest["address"]) == (False, "Phone/1.0", "127.0.0.1")
    assert mine["current"] is True and mine["user_agent"].startswith("python-httpx")
    assert set(mine) == {"id", "created_at", "last_used_at", "user_agent", "address", "current"}
    assert other not in str(listed) and mine["id"] != newest["id"]


def test_ending_a_session_stops_its_token_and_closes_its_sockets(server, signup) -> None:
    ann = signup("Ann")
    token = httpx.post(f"{server.url}/auth/login", json={"email": ann.email, "password": ann.password}).json()["token"]
    phone = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"})
    with Feed(server, headers={"Authorization": f"Bearer {token}"}) as feed:
        feed.expect("ready")
        feed.subscribe("c", "contacts")
        target = next(s for s in ann.get("/auth/sessions").json()["items"] if not s["current"])
        assert ann.delete(f"/auth/sessions/{target['id']}").status_code == 204
        assert feed.closed(10)[0] == 4001
    assert phone.get("/auth/me").status_code == 401
    assert ann.get("/auth/me").status_code == 200
    assert ann.delete(f"/auth/sessions/{target['id']}").status_code == 404
    phone.close()


def test_nobody_ends_another_users_session(signup) -> None:
    ann, eve = signup("Ann"), signup("Eve")
    ann_session = ann.get("/auth/sessions").json()["items"][0]["id"]
    assert eve.delete(f"/auth/sessions/{ann_session}").status_code == 404
    assert eve.delete("/auth/sessions/not-an-id").status_code in (400, 404)
    assert ann.get("/auth/me").status_code == 200


def test_ending_the_current_session_is_a_logout(signup) -> None:
    ann = signup("Ann")
    mine = ann.get("/auth/sessions").json()["items"][0]
    assert ann.delete(f"/auth/sessions/{mine['id']}").status_code == 204
    assert ann.get("/auth/me").status_code == 401


def test_an_expired_session_is_not_listed_and_a_hand_made_one_can_be_ended(server, signup, db) -> None:
    ann = signup("Ann")
    past = datetime.now(UTC) - timedelta(minutes=1)
    user = ObjectId(ann.id)
    db.sessions.insert_one({"_id": "expired-by-hand", "user": user, "created_at": past, "expires_at": past})
    odd = db.sessions.insert_one({"_id": ObjectId(), "user": user, "created_at": past, "user_agent": "x" * 100_000,
                                  "expires_at": datetime.now(UTC) + timedelta(days=1)},
                                 bypass_document_validation=True).inserted_id  # fmt: skip
    items = ann.get("/auth/sessions").json()["items"]
    assert len(items) == 2 and all(len(item["user_agent"] or "") <= 256 for item in items)
    hand_made = next(item for item in items if not item["current"] and item["user_agent"].startswith("x"))
    assert ann.delete(f"/auth/sessions/{hand_made['id']}").status_code == 204
    assert db.sessions.find_one({"_id": odd}) is None
