"""Accounts: register, login, logout, me, and how credentials are kept."""

from __future__ import annotations

import re

import httpx

from .harness import unique_email

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def test_register_answers_the_user_and_a_working_token(anon: httpx.Client) -> None:
    email = unique_email("Ann")
    answer = anon.post("/auth/register", json={"email": email, "password": "s3cret-pass", "name": "Ann"})
    assert answer.status_code == 201
    body = answer.json()
    assert set(body) == {"user", "token"}
    assert set(body["user"]) == {"id", "email", "name", "created_at", "email_verified"}
    assert body["user"]["email_verified"] is False
    assert body["user"]["email"] == email and body["user"]["name"] == "Ann"
    assert re.fullmatch(r"[0-9a-f]{24}", body["user"]["id"])
    assert ISO.match(body["user"]["created_at"])
    me = anon.get("/auth/me", headers={"Authorization": f"Bearer {body['token']}"})
    assert me.status_code == 200 and me.json() == {"user": body["user"]}


def test_a_taken_email_is_a_conflict_whatever_its_case(anon: httpx.Client, db) -> None:
    email = unique_email("Dup")
    first = anon.post("/auth/register", json={"email": email, "password": "password1", "name": "A"})
    assert first.status_code == 201
    again = anon.post("/auth/register", json={"email": email.upper(), "password": "password2", "name": "B"})
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "conflict"
    assert db.users.count_documents({"email": email}) == 1


def test_registration_refuses_bad_fields_and_stores_nothing(anon: httpx.Client, db) -> None:
    before = db.users.count_documents({})
    cases = [
        {"email": unique_email("x"), "password": "short", "name": "X"},
        {"email": "not-an-email", "password": "long enough", "name": "X"},
        {"email": unique_email("x"), "password": "long enough"},
        {"email": unique_email("x"), "password": 12345678, "name": "X"},
        {"email": unique_email("x"), "password": "long enough", "name": "X", "admin": True},
        {"email": {"$gt": ""}, "password": "long enough", "name": "X"},
    ]
    for payload in cases:
        answer = anon.post("/auth/register", json=payload)
        assert answer.status_code == 422, payload
        error = answer.json()["error"]
        assert error["code"] == "validation_error" and error["details"], payload
    assert db.users.count_documents({}) == before


def test_login_gives_a_new_token_and_bad_credentials_are_401(anon: httpx.Client, signup) -> None:
    ann = signup("Ann", password="ann password")
    good = anon.post("/auth/login", json={"email": ann.email, "password": "ann password"})
    assert good.status_code == 200
    assert good.json()["user"] == ann.user and good.json()["token"] != ann.token
    wrong = anon.post("/auth/login", json={"email": ann.email, "password": "not it"})
    unknown = anon.post("/auth/login", json={"email": unique_email("nobody"), "password": "whatever"})
    for answer in (wrong, unknown):
        assert answer.status_code == 401
        assert answer.json()["error"]["code"] == "unauthorized"


def test_logout_revokes_only_that_token_at_once(anon: httpx.Client, signup) -> None:
    ann = signup("Ann")
    second = anon.post("/auth/login", json={"email": ann.email, "password": ann.password}).json()["token"]
    assert ann.post("/auth/logout").status_code == 204
    assert ann.get("/auth/me").status_code == 401
    assert anon.get("/auth/me", headers={"Authorization": f"Bearer {second}"}).status_code == 200


def test_routes_need_a_valid_bearer_token(anon: httpx.Client) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer nonsense"},
        {"Authorization": "Basic YTpi"},
        {"Authorization": "Bearer"},
    ):
        answer = anon.get("/auth/me", headers=headers)
        assert answer.status_code == 401
        assert answer.json()["error"]["code"] == "unauthorized"


def test_passwords_and_tokens_are_stored_only_as_hashes(signup, db) -> None:
    ann = signup("Ann", password="plain text pw")
    stored = db.users.find_one({"email": ann.email})
    assert stored["password"].startswith("$argon2id$") and "plain text pw" not in stored["password"]
    sessions = list(db.sessions.find({"user": stored["_id"]}))
    assert sessions and all(ann.token not in str(session) for session in sessions)


def test_repeated_failed_logins_are_throttled_even_with_the_right_password(anon: httpx.Client, signup, db) -> None:
    ann = signup("Ann", password="the real one")
    for _ in range(5):
        assert anon.post("/auth/login", json={"email": ann.email, "password": "guess"}).status_code == 401
    blocked = anon.post("/auth/login", json={"email": ann.email, "password": "the real one"})
    assert blocked.status_code == 429
    assert blocked.json()["error"]["code"] == "rate_limited"
    assert int(blocked.headers["Retry-After"]) >= 1
    db.throttles.delete_many({})  # the window passing, without waiting five minutes
    assert anon.post("/auth/login", json={"email": ann.email, "password": "the real one"}).status_code == 200


def test_a_header_that_is_not_utf8_is_an_unknown_token_not_a_500(anon) -> None:
    odd = {"Authorization": b"Bearer \xff\xfe\x80"}
    assert anon.get("/auth/me", headers=odd).status_code == 401
    assert anon.get("/openapi.json", headers=odd).status_code == 200  # public: the token is not even needed
    assert anon.post("/auth/login", json={"email": "a@b.cd", "password": "x"}, headers=odd).status_code == 401


def test_a_login_history_written_by_hand_as_anything_but_a_list_does_not_stop_logins(anon, signup, db) -> None:
    ann = signup("Ann")
    db.users.update_one({"email": ann.email}, {"$set": {"addresses": "1.2.3.4"}})
    assert anon.post("/auth/login", json={"email": ann.email, "password": ann.password}).status_code == 200
    assert isinstance(db.users.find_one({"email": ann.email})["addresses"], list)
