"""Documents over REST: versions and ETags, roles, revisions."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
from bson import ObjectId


def make(account, **fields) -> dict:
    answer = account.post("/documents", json={"title": "Design notes", **fields})
    assert answer.status_code == 201, answer.text
    return answer.json()


def share(owner, doc: dict, with_account, role: str) -> dict:
    answer = owner.post(f"/documents/{doc['id']}/collaborators", json={"email": with_account.email, "role": role})
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_new_document_is_version_1_owned_by_its_creator(signup) -> None:
    ann = signup("Ann")
    answer = ann.post("/documents", json={"title": "Café Plans!", "body": "b", "abstract": "a", "tags": ["x"]})
    assert answer.status_code == 201 and answer.headers["ETag"] == '"1"'
    doc = answer.json()
    assert doc["version"] == 1 and doc["slug"] == "cafe-plans"
    assert doc["owner"] == {"id": ann.id, "name": "Ann"} and doc["collaborators"] == []
    assert {doc[k] for k in ("title", "body", "abstract")} == {"Café Plans!", "b", "a"} and doc["tags"] == ["x"]
    got = ann.get(f"/documents/{doc['id']}")
    assert got.json() == doc and got.headers["ETag"] == '"1"'


def test_an_edit_bumps_the_version_and_keeps_the_earlier_one(signup) -> None:
    ann = signup("Ann")
    doc = make(ann, body="v1")
    for n in (2, 3, 4):
        answer = ann.patch(f"/documents/{doc['id']}", json={"body": f"v{n}"})
        assert answer.status_code == 200 and answer.json()["version"] == n and answer.headers["ETag"] == f'"{n}"'
    revisions = ann.get(f"/documents/{doc['id']}/revisions").json()
    assert [r["version"] for r in revisions["items"]] == [3, 2, 1]
    assert [r["body"] for r in revisions["items"]] == ["v3", "v2", "v1"]
    assert all(r["edited_by"] == {"id": ann.id, "name": "Ann"} for r in revisions["items"])


def test_a_document_says_who_saved_its_current_version(signup) -> None:
    ann, bob = signup("Ann"), signup("Bob")
    doc = make(ann)
    assert doc["updated_by"] == {"id": ann.id, "name": "Ann"}
    ann.post(f"/documents/{doc['id']}/collaborators", json={"email": bob.email, "role": "editor"})
    saved = bob.patch(f"/documents/{doc['id']}", json={"body": "bob's words"}).json()
    assert saved["updated_by"] == {"id": bob.id, "name": "Bob"}
    assert ann.get(f"/documents/{doc['id']}").json()["updated_by"] == {"id": bob.id, "name": "Bob"}


def test_a_stale_if_match_is_412_and_changes_nothing(signup) -> None:
    ann = signup("Ann")
    doc = make(ann)
    assert ann.patch(f"/documents/{doc['id']}", json={"body": "mine"}, headers={"If-Match": '"1"'}).status_code == 200
    stale = ann.patch(f"/documents/{doc['id']}", json={"body": "theirs"}, headers={"If-Match": '"1"'})
    assert stale.status_code == 412 and stale.json()["error"]["code"] == "precondition_failed"
    current = ann.get(f"/documents/{doc['id']}").json()
    assert current["body"] == "mine" and current["version"] == 2
    for header, version in (('W/"2"', 3), ("*", 4), ('"7", "4"', 5)):
        answer = ann.patch(f"/documents/{doc['id']}", json={"tags": [str(version)]}, headers={"If-Match": header})
        assert answer.status_code == 200 and answer.json()["version"] == version, header
    assert ann.patch(f"/documents/{doc['id']}", json={"body": "x"}, headers={"If-Match": "garbage"}).status_code == 412
    for odd in ('"²"', '"' + "9" * 5000 + '"', '"-1"', '"1e3"', ",,,"):  # name no version: 412, never 500
        answer = ann.patch(f"/documents/{doc['id']}", json={"body": "x"}, headers={"If-Match": odd.encode()})
        assert answer.status_code == 412, odd


def test_two_editors_with_the_same_version_never_overwrite_each_other(signup) -> None:
    ann, bob = signup("Ann"), signup("Bob")
    doc = make(ann)
    share(ann, doc, bob, "editor")

    def edit(args: tuple) -> int:
        account, text = args
        return account.patch(f"/documents/{doc['id']}", json={"body": text}, headers={"If-Match": '"1"'}).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(edit, [(ann if i % 2 else bob, f"edit {i}") for i in range(8)]))
    assert sorted(statuses) == [200] + [412] * 7
    final = ann.get(f"/documents/{doc['id']}").json()
    assert final["version"] == 2
    assert [r["version"] for r in ann.get(f"/documents/{doc['id']}/revisions").json()["items"]] == [1]


def test_roles_decide_who_may_do_what(signup) -> None:
    ann, ed, vi, stranger = signup("Ann"), signup("Ed"), signup("Vi"), signup("Stranger")
    doc = make(ann)
    share(ann, doc, ed, "editor")
    doc = share(ann, doc, vi, "viewer")
    assert [(c["name"], c["role"]) for c in doc["collaborators"]] == [("Ed", "editor"), ("Vi", "viewer")]
    assert ed.patch(f"/documents/{doc['id']}", json={"body": "by ed"}).status_code == 200
    assert vi.get(f"/documents/{doc['id']}").json()["body"] == "by ed"
    denied = vi.patch(f"/documents/{doc['id']}", json={"body": "by vi"})
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "forbidden"
    assert ed.delete(f"/documents/{doc['id']}").status_code == 403
    assert (
        ed.post(f"/documents/{doc['id']}/collaborators", json={"email": stranger.email, "role": "viewer"}).status_code
        == 403
    )
    path = f"/documents/{doc['id']}"
    hidden = (
        stranger.get(path),
        stranger.patch(path, json={"body": "x"}),
        stranger.delete(path),
        stranger.get(f"{path}/revisions"),
        stranger.get(f"{path}/presence"),
    )
    for answer in hidden:
        assert answer.status_code == 404
    assert {d["id"] for d in vi.get("/documents").json()["items"]} == {doc["id"]}
    assert stranger.get("/documents").json()["items"] == []


def test_sharing_changes_roles_and_unsharing_removes_access(signup) -> None:
    ann, bob = signup("Ann"), signup("Bob")
    doc = make(ann)
    share(ann, doc, bob, "viewer")
    doc = share(ann, doc, bob, "editor")
    assert doc["collaborators"] == [{"id": bob.id, "name": "Bob", "role": "editor"}]
    answer = ann.delete(f"/documents/{doc['id']}/collaborators/{bob.id}")
    assert answer.status_code == 200 and answer.json()["collaborators"] == []
    assert bob.get(f"/documents/{doc['id']}").status_code == 404
    assert ann.delete(f"/documents/{doc['id']}/collaborators/{bob.id}").status_code == 404


def test_a_collaborator_may_leave_but_not_remove_others(signup) -> None:
    ann, bob, cat = signup("Ann"), signup("Bob"), signup("Cat")
    doc = make(ann)
    share(ann, doc, bob, "editor")
    share(ann, doc, cat, "editor")
    assert bob.delete(f"/documents/{doc['id']}/collaborators/{cat.id}").status_code == 403
    assert bob.delete(f"/documents/{doc['id']}/collaborators/{bob.id}").status_code == 200
    assert (
        bob.get(f"/documents/{doc['id']}").status_code == 404 and cat.get(f"/documents/{doc['id']}").status_code == 200
    )


def test_bad_collaborators_are_refused(signup) -> None:
    ann = signup("Ann")
    doc = make(ann)
    cases = [
        ({"email": "nobody-here@example.com", "role": "editor"}, 202),  # a pending invite, not a collaborator
        ({"email": ann.email, "role": "editor"}, 409),
        ({"email": ann.email, "role": "owner"}, 422),
        ({"email": "x"}, 422),
    ]
    for payload, status in cases:
        assert ann.post(f"/documents/{doc['id']}/collaborators", json=payload).status_code == status, payload
    assert ann.get(f"/documents/{doc['id']}").json()["collaborators"] == []


def test_deleting_is_for_the_owner_and_removes_revisions(signup, db) -> None:
    ann = signup("Ann")
    doc = make(ann)
    ann.patch(f"/documents/{doc['id']}", json={"body": "2"})
    assert ann.delete(f"/documents/{doc['id']}").status_code == 204
    assert ann.get(f"/documents/{doc['id']}").status_code == 404
    from bson import ObjectId

    assert db.revisions.count_documents({"document": ObjectId(doc["id"])}) == 0


def test_bad_document_input_is_refused(signup) -> None:
    ann = signup("Ann")
    doc = make(ann)
    assert ann.post("/documents", json={"body": "no title"}).status_code == 422
    assert ann.post("/documents", json={"title": "x", "$inc": {"version": 1}}).status_code == 422
    for payload in ({}, {"title": None}, {"version": 9}, {"body": 5}, {"owner": {"id": "x"}}):
        assert ann.patch(f"/documents/{doc['id']}", json=payload).status_code == 422, payload
    assert ann.get(f"/documents/{doc['id']}").json() == doc
    assert ann.get("/documents/not-an-id").status_code == 400


def test_documents_list_pages_newest_first(signup) -> None:
    ann = signup("Ann")
    ids = [make(ann, body=str(i))["id"] for i in range(5)]
    first = ann.get("/documents", params={"limit": 3}).json()
    second = ann.get("/documents", params={"limit": 3, "after": first["next"]}).json()
    assert [d["id"] for d in first["items"] + second["items"]] == ids[::-1] and second["next"] is None


def test_presence_route_is_empty_without_viewers(signup, anon: httpx.Client) -> None:
    ann = signup("Ann")
    doc = make(ann)
    assert ann.get(f"/documents/{doc['id']}/presence").json() == {"viewing": [], "editing": []}


def test_a_document_is_shared_with_at_most_ten_thousand_readers(signup, db) -> None:
    ann, bob, cat = signup("Ann"), signup("Bob"), signup("Cat")
    doc = ann.post("/documents", json={"title": "Town hall"}).json()
    ann.post(f"/documents/{doc['id']}/collaborators", json={"email": bob.email, "role": "viewer"})
    others = [{"_id": ObjectId(), "name": f"r{i}", "role": "viewer"} for i in range(9_998)]
    db.documents.update_one({"_id": ObjectId(doc["id"])}, {"$push": {"collaborators": {"$each": others},
                            "access": {"$each": [o["_id"] for o in others]}}})  # fmt: skip
    refused = ann.post(f"/documents/{doc['id']}/collaborators", json={"email": cat.email, "role": "viewer"})
    assert refused.status_code == 409 and "10,000" in refused.json()["error"]["message"]
    again = ann.post(f"/documents/{doc['id']}/collaborators", json={"email": bob.email, "role": "editor"})
    assert again.status_code == 200  # a role change adds no one
    assert cat.get(f"/documents/{doc['id']}").status_code == 404


def test_sharing_with_one_person_at_once_from_many_requests_answers_each_with_the_document(signup) -> None:
    ann, bob = signup("Ann"), signup("Bob")
    doc = ann.post("/documents", json={"title": "Race"}).json()

    def share(_: int) -> httpx.Response:
        return ann.post(f"/documents/{doc['id']}/collaborators", json={"email": bob.email, "role": "viewer"})

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(share, range(6)))
    assert [a.status_code for a in answers] == [200] * 6
    assert [c["id"] for c in ann.get(f"/documents/{doc['id']}").json()["collaborators"]] == [bob.id]
