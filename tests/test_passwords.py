"""Passwords: a forgotten one is reset by mail (once, before it expires, ending every session), and a
changed one ends every session but the one that changed it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from bson import ObjectId

from deploy.local.mailsink import code_in

from .feed import Feed
from .harness import mail_sink, unique_email, wait_for


def forgot(server, email: str) -> httpx.Response:
    return httpx.post(f"{server.url}/auth/password/forgot", json={"email": email})


def reset(server, token: str, password: str) -> httpx.Response:
    return httpx.post(f"{server.url}/auth/password/reset", json={"token": token, "password": password})


def login(server, email: str, password: str) -> int:
    return httpx.post(f"{server.url}/auth/login", json={"email": email, "password": password}).status_code


def test_a_forgotten_password_is_reset_by_mail_and_every_session_ends(server, signup) -> None:
    ann = signup("Ann")
    with Feed(server, ann) as feed:
        feed.subscribe("c", "contacts")
        assert forgot(server, ann.email).status_code == 202
        code = code_in(mail_sink().mailbox.wait(ann.email, "#reset=")[0], "reset")
        assert reset(server, code, "a brand new password").status_code == 204
        assert feed.closed(10)[0] == 4001
    assert ann.get("/auth/me").status_code == 401
    assert login(server, ann.email, ann.password) == 401
    assert login(server, ann.email, "a brand new password") == 200
    assert reset(server, code, "yet another password").status_code == 400  # single use


def test_the_answer_is_the_same_whether_or_not_the_address_has_an_account(server, signup, db) -> None:
    ann = signup("Ann")
    stranger = unique_email("Nobody")
    known, unknown = forgot(server, ann.email), forgot(server, stranger)
    assert (known.status_code, known.content) == (unknown.status_code, unknown.content) == (202, b"")
    mail_sink().mailbox.wait(ann.email, "#reset=")
    wait_for(lambda: db.outbox.find_one({"to": stranger, "status": "dropped"}), 20, "the stranger's letter dropped")
    assert mail_sink().mailbox.to(stranger) == []


def test_an_expired_reset_code_is_refused_and_changes_nothing(server, signup, db) -> None:
    ann = signup("Ann")
    forgot(server, ann.email)
    code = code_in(mail_sink().mailbox.wait(ann.email, "#reset=")[0], "reset")
    past = datetime.now(UTC) - timedelta(seconds=1)
    db.tokens.update_many({"user": ObjectId(ann.id), "kind": "reset"}, {"$set": {"expires_at": past}})
    answer = reset(server, code, "a brand new password")
    assert answer.status_code == 400 and "expired" in answer.json()["error"]["message"]
    assert ann.get("/auth/me").status_code == 200
    assert login(server, ann.email, ann.password) == 200


def test_reset_requests_are_limited_per_address_whether_or_not_it_has_an_account(server, signup) -> None:
    for email in (signup("Ann").email, unique_email("Nobody")):
        assert [forgot(server, email).status_code for _ in range(4)] == [202, 202, 202, 429]


def test_a_reset_code_is_not_a_verification_code_nor_the_other_way_round(server, signup) -> None:
    ann = signup("Ann", verified=False)
    verify_code = code_in(mail_sink().mailbox.wait(ann.email, "#verify=")[0], "verify")
    assert reset(server, verify_code, "a brand new password").status_code == 400
    forgot(server, ann.email)
    reset_code = code_in(mail_sink().mailbox.wait(ann.email, "#reset=")[0], "reset")
    assert httpx.post(f"{server.url}/auth/verify", json={"token": reset_code}).status_code == 400


def test_changing_the_password_keeps_this_session_and_ends_the_others(server, signup) -> None:
    ann = signup("Ann")
    other = httpx.post(f"{server.url}/auth/login", json={"email": ann.email, "password": ann.password}).json()["token"]
    wrong = ann.post("/auth/password", json={"current_password": "not it", "password": "a brand new password"})
    assert wrong.status_code == 403
    changed = ann.post("/auth/password", json={"current_password": ann.password, "password": "a brand new password"})
    assert changed.status_code == 204
    assert ann.get("/auth/me").status_code == 200
    assert httpx.get(f"{server.url}/auth/me", headers={"Authorization": f"Bearer {other}"}).status_code == 401
    assert login(server, ann.email, "a brand new password") == 200


def test_guessing_the_current_password_is_limited(signup) -> None:
    ann = signup("Ann")
    answers = [ann.post("/auth/password", json={"current_password": f"guess {i}", "password": "a brand new password"})
               .status_code for i in range(6)]  # fmt: skip
    assert answers == [403] * 5 + [429]


def test_a_squatter_changing_the_password_in_a_loop_cannot_keep_the_owner_out(server, signup) -> None:
    squatter = signup("Mallory", verified=False)
    assert forgot(server, squatter.email).status_code == 202  # the owner of the address asks for a reset
    code = code_in(mail_sink().mailbox.wait(squatter.email, "#reset=")[0], "reset")
    password = squatter.password
    for i in range(3):
        new = f"squatter password {i}"
        answer = squatter.post("/auth/password", json={"current_password": password, "password": new})
        assert answer.status_code == 204
        password = new
    assert reset(server, code, "the owners password").status_code == 204
    assert squatter.get("/auth/me").status_code == 401
