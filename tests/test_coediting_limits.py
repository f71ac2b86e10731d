"""The live documents a process holds (COEDIT_DOCUMENTS) are given back however a `doc` subscription
ends: unsubscribed, closed, or ended by the server (access removed, document deleted)."""

from __future__ import annotations

import pytest

from .feed import Feed
from .test_coediting import Editor, shared


@pytest.fixture(scope="module")
def server_env() -> dict[str, str]:
    return {"COEDIT_DOCUMENTS": "2"}


def test_a_process_holding_its_limit_of_live_documents_refuses_one_more(server, signup) -> None:
    ann = signup("Ann")
    documents = [ann.post("/documents", json={"title": f"d{i}", "body": "x"}).json()["id"] for i in range(3)]
    first, second = Editor(server, ann, documents[0]), Editor(server, ann, documents[1])
    with Feed(server, ann) as feed:
        feed.send(type="subscribe", id="d", stream="doc", params={"id": documents[2]})
        feed.expect("error", id="d", code="unavailable")
    first.close()
    second.close()


def test_subscriptions_the_server_ends_give_their_documents_back(server, signup) -> None:
    ann, bob = signup("Ann"), signup("Bob")
    for ending in ("access removed", "document deleted", "access removed"):
        document = shared(ann, bob)
        editor = Editor(server, bob, document)
        if ending == "access removed":
            ann.delete(f"/documents/{document}/collaborators/{bob.id}")
        else:
            ann.delete(f"/documents/{document}")
        while not ((frame := editor.feed.recv())["type"] == "event" and frame["op"] in ("leave", "delete")):
            pass
        editor.close()
    # Three documents were opened and their subscriptions ended: none is held for them any more.
    mine = ann.post("/documents", json={"title": "Mine", "body": "x"}).json()
    with Feed(server, ann) as feed:
        feed.send(type="subscribe", id="d", stream="doc", params={"id": mine["id"]})
        feed.expect("subscribed", id="d")
