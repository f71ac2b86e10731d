"""Contacts: each user's own address book, with search and cursor pages."""

from __future__ import annotations

import httpx
from bson import ObjectId

from .harness import wait_for

FULL = {
    "name": "Grace Hopper",
    "email": "grace@navy.mil",
    "phone": "+1 555 0100",
    "company": "US Navy",
    "notes": "COBOL",
    "tags": ["pioneer", "navy"],
}


def test_a_created_contact_has_its_fields_an_id_and_times(signup) -> None:
    ann = signup()
    answer = ann.post("/contacts", json=FULL)
    assert answer.status_code == 201
    contact = answer.json()
    assert {k: contact[k] for k in FULL} == FULL
    assert set(contact) == {*FULL, "id", "created_at", "updated_at"}
    assert contact["created_at"] == contact["updated_at"]
    assert ann.get(f"/contacts/{contact['id']}").json() == contact


def test_only_the_name_is_required(signup) -> None:
    contact = signup().post("/contacts", json={"name": "Ada"}).json()
    assert contact["name"] == "Ada" and contact["tags"] == []
    assert contact["email"] is None and contact["company"] is None


def test_pages_walk_every_contact_newest_first_without_repeats(signup) -> None:
    ann = signup()
    made = [ann.post("/contacts", json={"name": f"c{i}"}).json()["id"] for i in range(25)]
    seen: list[str] = []
    after = None
    sizes = []
    while True:
        params = {"limit": 10, **({"after": after} if after else {})}
        page = ann.get("/contacts", params=params).json()
        sizes.append(len(page["items"]))
        seen += [item["id"] for item in page["items"]]
        after = page["next"]
        if after is None:
            break
    assert sizes == [10, 10, 5]
    assert seen == list(reversed(made))
    assert len(ann.get("/contacts").json()["items"]) == 20


def test_search_matches_name_email_or_company_case_insensitively(signup) -> None:
    ann = signup()
    ann.post("/contacts", json={"name": "Linus", "company": "Linux Foundation"})
    ann.post("/contacts", json={"name": "Ken", "email": "ken@BELL-LABS.com"})
    ann.post("/contacts", json={"name": "Dennis", "company": "Bell Labs"})

    def names(q: str) -> set[str]:
        return {c["name"] for c in ann.get("/contacts", params={"q": q}).json()["items"]}

    assert names("bell") == {"Ken", "Dennis"}
    assert names("LINUS") == {"Linus"}
    assert names("foundation") == {"Linus"}
    assert names("nobody") == set()


def test_search_text_is_literal_never_a_pattern(signup) -> None:
    ann = signup()
    ann.post("/contacts", json={"name": "a.c (x)"})
    ann.post("/contacts", json={"name": "abc"})
    assert [c["name"] for c in ann.get("/contacts", params={"q": "a.c"}).json()["items"]] == ["a.c (x)"]
    for q in (".*", "(", "[", "\\", "$where", "^"):
        answer = ann.get("/contacts", params={"q": q})
        assert answer.status_code == 200, q
    assert ann.get("/contacts", params={"q": ".*"}).json()["items"] == []


def test_patch_changes_only_what_is_sent_and_null_clears(signup) -> None:
    ann = signup()
    contact = ann.post("/contacts", json=FULL).json()
    answer = ann.patch(f"/contacts/{contact['id']}", json={"company": "Yale", "email": None})
    assert answer.status_code == 200
    changed = answer.json()
    assert changed["company"] == "Yale" and changed["email"] is None
    assert changed["name"] == FULL["name"] and changed["tags"] == FULL["tags"]
    assert changed["updated_at"] >= contact["updated_at"] and changed["created_at"] == contact["created_at"]
    assert ann.get(f"/contacts/{contact['id']}").json() == changed


def test_bad_patches_are_refused_and_change_nothing(signup) -> None:
    ann = signup()
    contact = ann.post("/contacts", json=FULL).json()
    for payload in ({}, {"name": None}, {"name": ""}, {"tags": "x"}, {"owner": "someone"}, {"$set": {"name": "x"}}):
        answer = ann.patch(f"/contacts/{contact['id']}", json=payload)
        assert answer.status_code == 422, payload
        assert answer.json()["error"]["code"] == "validation_error"
    assert ann.get(f"/contacts/{contact['id']}").json() == contact


def test_delete_removes_the_contact(signup) -> None:
    ann = signup()
    contact = ann.post("/contacts", json={"name": "Gone"}).json()
    assert ann.delete(f"/contacts/{contact['id']}").status_code == 204
    assert ann.get(f"/contacts/{contact['id']}").status_code == 404
    assert ann.delete(f"/contacts/{contact['id']}").status_code == 404


def test_one_user_never_sees_or_touches_another_users_contacts(signup) -> None:
    ann, bob = signup("Ann"), signup("Bob")
    contact = ann.post("/contacts", json=FULL).json()
    assert bob.get("/contacts").json() == {"items": [], "next": None}
    assert bob.get("/contacts", params={"q": "grace"}).json()["items"] == []
    for answer in (
        bob.get(f"/contacts/{contact['id']}"),
        bob.patch(f"/contacts/{contact['id']}", json={"name": "stolen"}),
        bob.delete(f"/contacts/{contact['id']}"),
    ):
        assert answer.status_code == 404
        assert answer.json()["error"]["code"] == "not_found"
    assert ann.get(f"/contacts/{contact['id']}").json() == contact


def test_bad_ids_and_cursors_are_400(signup) -> None:
    ann = signup()
    for path in ("/contacts/zzz", "/contacts/123", "/contacts?after=nope", "/contacts?after={\"$gt\":\"\"}",
                 "/contacts?after=%00"):  # fmt: skip
        answer = ann.get(path)
        assert answer.status_code == 400, path
        assert answer.json()["error"]["code"] == "bad_request"


def test_a_limit_out_of_range_or_not_a_number_is_a_validation_error(signup) -> None:
    ann = signup()
    for limit in ("0", "101", "1000", "x", "-1", "1.5", "²", "9" * 5000, "%00"):
        answer = ann.get(f"/contacts?limit={limit}")
        assert answer.status_code == 422, limit
        assert answer.json()["error"]["code"] == "validation_error"
        assert answer.json()["error"]["details"][0]["field"] == "limit"


def test_a_search_with_a_nul_or_an_undecodable_byte_is_refused_not_sent_to_mongodb(signup) -> None:
    ann = signup()
    for q in ("%00", "a%00b", "%01", "%ff", "%c3%28"):
        answer = ann.get(f"/contacts?q={q}")
        assert answer.status_code == 422, (q, answer.text)
        assert answer.json()["error"]["details"][0]["field"] == "q"
    assert ann.get("/contacts?q=%C3%A9").status_code == 200  # é is fine


def test_query_parameters_never_become_query_documents(signup) -> None:
    ann = signup()
    ann.post("/contacts", json={"name": "only"})
    plain = ann.get("/contacts").json()
    assert ann.get("/contacts?after[$gt]=1&owner[$ne]=x").json() == plain
    assert ann.get("/contacts", params={"q": '{"$ne": null}'}).json()["items"] == []


def test_smuggled_operators_and_bad_bodies_store_nothing(signup, db) -> None:
    ann = signup()
    owner = ObjectId(ann.id)
    cases = [
        ({"name": "x", "$where": "1"}, 422),
        ({"name": "x", "notes.deep": "1"}, 422),
        ({"name": {"$ne": None}}, 422),
        ({"name": "x", "tags": [{"$gt": ""}]}, 422),
        ({"name": 5}, 422),
        ([{"name": "x"}], 400),
    ]
    for payload, status in cases:
        answer = ann.post("/contacts", json=payload)
        assert answer.status_code == status, payload
    malformed = ann.post("/contacts", content=b'{"name": "x",', headers={"Content-Type": "application/json"})
    assert malformed.status_code == 400 and malformed.json()["error"]["code"] == "bad_request"
    assert db.contacts.count_documents({"owner": owner}) == 0


def test_a_body_over_two_mebibytes_is_413(signup, db) -> None:
    ann = signup()
    huge = b'{"name": "x", "notes": "' + b"a" * (3 * 1024 * 1024) + b'"}'
    answer = ann.post("/contacts", content=huge, headers={"Content-Type": "application/json"})
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "payload_too_large"
    assert db.contacts.count_documents({"owner": ObjectId(ann.id)}) == 0


def test_a_write_made_straight_in_mongodb_shows_up_through_the_api(signup, db) -> None:
    ann = signup()
    from datetime import UTC, datetime

    stamp = datetime.now(UTC)
    inserted = db.contacts.insert_one(
        {"owner": ObjectId(ann.id), "name": "From the shell", "tags": [], "created_at": stamp, "updated_at": stamp}
    ).inserted_id
    listed = wait_for(lambda: ann.get("/contacts", params={"q": "shell"}).json()["items"], what="the shell's contact")
    assert listed[0]["id"] == str(inserted)


def test_errors_are_json_never_html_or_traces(anon: httpx.Client) -> None:
    for method, path in (("GET", "/no/such/route"), ("PUT", "/health"), ("DELETE", "/auth/login")):
        answer = anon.request(method, path)
        assert answer.status_code in (404, 405)
        assert answer.headers["content-type"].startswith("application/json")
        assert set(answer.json()) == {"error"} and "Traceback" not in answer.text


def test_json_nested_deeper_than_32_levels_is_a_400_and_a_deep_but_allowed_body_is_validated(signup) -> None:
    ann = signup()
    for depth in (33, 3000, 100_000):
        answer = ann.post("/contacts", content=b'{"name": "x", "tags": ' + b"[" * depth + b"]" * depth + b"}",
                          headers={"Content-Type": "application/json"})  # fmt: skip
        assert answer.status_code == 400 and answer.json()["error"]["code"] == "bad_request", depth
        if depth == 33:  # deeper still, the JSON parser itself refuses it
            assert "nested deeper than 32" in answer.json()["error"]["message"]
    shallow = ann.post("/contacts", content=b'{"name": "x", "tags": ' + b"[" * 31 + b"]" * 31 + b"}")
    assert shallow.status_code == 422  # 32 levels in all: read, then refused by the shape
    assert ann.get("/contacts").json()["items"] == []
