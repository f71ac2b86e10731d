"""The resume window is everyone's: one user's writes are budgeted, and revisions have a retention."""

from __future__ import annotations

import pytest

from .feed import Feed, cursor_after_a_write


@pytest.fixture(scope="module")
def server_env() -> dict[str, str]:
    return {"WRITE_BUDGET": str(1 << 20), "REVISIONS_KEPT": "3"}  # 1 MiB a minute per user


def test_one_user_flooding_writes_is_refused_with_retry_after_and_others_are_not(server, signup) -> None:
    flooder, other = signup("Flood"), signup("Other")
    cursor = cursor_after_a_write(server, other)  # taken before the flood, resumed after it
    doc = flooder.post("/documents", json={"title": "big"}).json()
    answers = [flooder.patch(f"/documents/{doc['id']}", json={"body": f"{i}" + "x" * 100_000}) for i in range(12)]
    codes = [answer.status_code for answer in answers]
    assert codes[:2] == [200] * 2 and 429 in codes, codes  # ~500 KB of oplog each against 1 MiB a minute
    refused = next(answer for answer in answers if answer.status_code == 429)
    assert refused.json()["error"]["code"] == "rate_limited" and "write budget" in refused.json()["error"]["message"]
    assert int(refused.headers["Retry-After"]) >= 1
    assert flooder.get(f"/documents/{doc['id']}").status_code == 200  # reading is not budgeted
    assert other.post("/documents", json={"title": "mine", "body": "y" * 100_000}).status_code == 201
    missed = other.post("/contacts", json={"name": "while away"}).json()
    with Feed(server, other) as feed:
        assert [e["id"] for e in feed.subscribe("c", "contacts", since=cursor)] == [missed["id"]]


def test_a_document_keeps_its_last_revisions_only(signup) -> None:
    ann = signup("Ann")
    doc = ann.post("/documents", json={"title": "v1"}).json()
    for version in range(2, 8):
        assert ann.patch(f"/documents/{doc['id']}", json={"title": f"v{version}"}).status_code == 200
    revisions = ann.get(f"/documents/{doc['id']}/revisions").json()["items"]
    assert [r["version"] for r in revisions] == [6, 5, 4]  # REVISIONS_KEPT=3: versions 1..3 are gone


def test_small_edits_of_a_big_document_pay_for_the_document(signup) -> None:
    ann = signup("Ann")
    doc = ann.post("/documents", json={"title": "big", "body": "x" * 300_000}).json()
    codes = [ann.patch(f"/documents/{doc['id']}", json={"title": f"t{i}"}).status_code for i in range(4)]
    assert codes[0] == 200 and 429 in codes, codes  # each keeps a 300 KB revision: not 3 KB each


def test_chat_over_the_websocket_spends_the_same_budget(server, signup) -> None:
    ann = signup("Ann")
    room = ann.post("/rooms", json={"name": "r"}).json()
    with Feed(server, ann) as feed:
        for i in range(90):
            feed.send(type="chat.send", room=room["id"], text="w" * 3900, client_id=f"c{i}")
        frames = [feed.recv() for _ in range(90)]
    refused = [f for f in frames if f["type"] == "error"]
    assert refused and all(f["code"] == "rate_limited" and "write budget" in f["message"] for f in refused)
    assert sum(f["type"] == "ack" for f in frames) < 90


def test_sharing_a_big_document_pays_for_the_document(signup) -> None:
    ann, bob = signup("Ann"), signup("Bob")
    doc = ann.post("/documents", json={"title": "big", "body": "x" * 300_000}).json()
    codes = []
    for _ in range(3):
        codes.append(
            ann.post(f"/documents/{doc['id']}/collaborators", json={"email": bob.email, "role": "viewer"}).status_code
        )
        codes.append(ann.delete(f"/documents/{doc['id']}/collaborators/{bob.id}").status_code)
    assert codes[0] == 200 and 429 in codes, codes  # each change carries the whole 300 KB document
