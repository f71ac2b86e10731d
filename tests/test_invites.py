"""Invites: sharing with an address that is not a verified account promises access to whoever proves
they own it, and to nobody else."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from deploy.local.mailsink import code_in

from .feed import Feed
from .harness import Account, mail_sink, unique_email


def test_a_document_shared_before_its_reader_signs_up_is_theirs_once_they_verify(server, signup) -> None:
    ann = signup("Ann")
    doc = ann.post("/documents", json={"title": "Plans"}).json()
    colleague = unique_email("Bob")
    shared = ann.post(f"/documents/{doc['id']}/collaborators", json={"email": colleague, "role": "editor"})
    assert shared.status_code == 202
    invite = shared.json()["invite"]
    assert {k: invite[k] for k in ("email", "role", "pending")} == {
        "email": colleague,
        "role": "editor",
        "pending": True,
    }
    assert [i["id"] for i in ann.get("/invites").json()["items"]] == [invite["id"]]
    letter = mail_sink().mailbox.wait(colleague, "Plans")[0]
    assert letter["Subject"] == "You were invited to Murmuration"
    bob = signup("Bob", verified=False, email=colleague)
    assert bob.get(f"/documents/{doc['id']}").status_code == 404  # not before the address is proven
    bob.verify()
    seen = bob.get(f"/documents/{doc['id']}")
    assert seen.status_code == 200
    assert {"id": bob.id, "name": "Bob", "role": "editor"} in seen.json()["collaborators"]
    assert ann.get("/invites").json()["items"] == []


def test_a_squatter_who_registered_the_address_first_gets_nothing_and_the_owner_takes_it_back(server, signup) -> None:
    ann = signup("Ann")
    doc = ann.post("/documents", json={"title": "Salaries"}).json()
    address = unique_email("Bob")
    squatter = signup("Mallory", verified=False, email=address)
    shared = ann.post(f"/documents/{doc['id']}/collaborators", json={"email": address, "role": "viewer"})
    assert shared.status_code == 202  # an unverified account is not found: the same answer as no account
    assert squatter.get(f"/documents/{doc['id']}").status_code == 404
    assert squatter.get("/documents").json()["items"] == []
    # The real Bob cannot register (the address is taken) but can reset the password by mail.
    assert httpx.post(f"{server.url}/auth/password/forgot", json={"email": address}).status_code == 202
    code = code_in(mail_sink().mailbox.wait(address, "#reset=")[0], "reset")
    reset = httpx.post(f"{server.url}/auth/password/reset", json={"token": code, "password": "bobs own password"})
    assert reset.status_code == 204
    assert squatter.get("/auth/me").status_code == 401  # the squatter's session ended
    bob = Account(base_url=server.url, timeout=30)
    token = bob.post("/auth/login", json={"email": address, "password": "bobs own password"}).json()["token"]
    bob.headers["Authorization"] = f"Bearer {token}"
    assert bob.get("/auth/me").json()["user"]["email_verified"] is True
    assert bob.get(f"/documents/{doc['id']}").status_code == 200
    bob.close()


def test_a_verifying_reader_gets_enter_on_the_documents_stream(server, signup) -> None:
    ann = signup("Ann")
    doc = ann.post("/documents", json={"title": "Live"}).json()
    bob = signup("Bob", verified=False)
    assert (
        ann.post(f"/documents/{doc['id']}/collaborators", json={"email": bob.email, "role": "viewer"}).status_code
        == 202
    )
    with Feed(server, bob) as feed:
        feed.subscribe("d", "documents")
        bob.verify()
        event = feed.expect("event", sub="d")
        assert (event["op"], event["id"]) == ("enter", doc["id"])


def test_a_room_made_with_unverified_addresses_invites_them(signup) -> None:
    ann, cat = signup("Ann"), signup("Cat")
    newcomer = unique_email("Dan")
    made = ann.post("/rooms", json={"name": "Ops", "members": [cat.email, newcomer]})
    assert made.status_code == 201
    room = made.json()
    assert {m["name"] for m in room["members"]} == {"Ann", "Cat"}
    assert [(i["email"], i["kind"], i["target"]) for i in room["invites"]] == [(newcomer, "room", room["id"])]
    assert "role" not in room["invites"][0]
    dan = signup("Dan", email=newcomer)  # registers and verifies
    assert dan.get(f"/rooms/{room['id']}/messages").status_code == 200
    rooms = ann.get("/rooms").json()["items"]
    assert "Dan" in {m["name"] for r in rooms if r["id"] == room["id"] for m in r["members"]}


def test_a_withdrawn_invite_gives_nothing_and_only_its_sender_can_withdraw_it(signup) -> None:
    ann, eve = signup("Ann"), signup("Eve")
    doc = ann.post("/documents", json={"title": "t"}).json()
    address = unique_email("Bob")
    invite = ann.post(f"/documents/{doc['id']}/collaborators", json={"email": address, "role": "viewer"}).json()[
        "invite"
    ]
    assert eve.delete(f"/invites/{invite['id']}").status_code == 404
    assert ann.delete(f"/invites/{invite['id']}").status_code == 204
    assert ann.delete(f"/invites/{invite['id']}").status_code == 404
    bob = signup("Bob", email=address)
    assert bob.get(f"/documents/{doc['id']}").status_code == 404


def test_sharing_again_changes_the_role_of_the_pending_invite_and_mails_once(signup) -> None:
    ann = signup("Ann")
    doc = ann.post("/documents", json={"title": "Once"}).json()
    address = unique_email("Bob")
    for role in ("viewer", "editor"):
        assert (
            ann.post(f"/documents/{doc['id']}/collaborators", json={"email": address, "role": role}).status_code == 202
        )
    assert [i["role"] for i in ann.get("/invites").json()["items"]] == ["editor"]
    bob = signup("Bob", email=address)
    assert {"id": bob.id, "name": "Bob", "role": "editor"} in bob.get(f"/documents/{doc['id']}").json()["collaborators"]
    assert len(mail_sink().mailbox.to(address, "Once")) == 1


def test_an_invite_to_a_deleted_document_goes_with_it(signup, db) -> None:
    ann = signup("Ann")
    doc = ann.post("/documents", json={"title": "t"}).json()
    ann.post(f"/documents/{doc['id']}/collaborators", json={"email": unique_email("Bob"), "role": "viewer"})
    assert ann.delete(f"/documents/{doc['id']}").status_code == 204
    assert ann.get("/invites").json()["items"] == []


def test_a_verified_address_is_shared_with_at_once(signup) -> None:
    ann, bob = signup("Ann"), signup("Bob")
    doc = ann.post("/documents", json={"title": "t"}).json()
    shared = ann.post(f"/documents/{doc['id']}/collaborators", json={"email": bob.email, "role": "viewer"})
    assert shared.status_code == 200 and bob.get(f"/documents/{doc['id']}").status_code == 200


def test_an_invite_whose_inviter_lost_the_room_gives_nothing(signup) -> None:
    ann, cat = signup("Ann"), signup("Cat")
    room = ann.post("/rooms", json={"name": "r", "members": [cat.email]}).json()
    address = unique_email("Bob")
    assert cat.post(f"/rooms/{room['id']}/members", json={"email": address}).status_code == 202
    assert ann.delete(f"/rooms/{room['id']}/members/{cat.id}").status_code == 200
    bob = signup("Bob", email=address)
    assert bob.get(f"/rooms/{room['id']}/messages").status_code == 404


def test_an_unverified_account_cannot_invite_strangers(signup) -> None:
    mallory = signup("Mallory", verified=False)
    doc = mallory.post("/documents", json={"title": "URGENT: verify at http://evil.example"}).json()
    answer = mallory.post(f"/documents/{doc['id']}/collaborators", json={"email": unique_email("x"), "role": "viewer"})
    assert answer.status_code == 403 and "verify your own address" in answer.json()["error"]["message"]
    assert mallory.post("/rooms", json={"name": "r", "members": [unique_email("x")]}).status_code == 403


def test_invites_are_limited_per_inviter_and_letters_per_address(signup) -> None:
    ann = signup("Ann")
    doc = ann.post("/documents", json={"title": "t"}).json()
    answers = [ann.post(f"/documents/{doc['id']}/collaborators", json={"email": unique_email("x"), "role": "viewer"})
               .status_code for _ in range(21)]  # fmt: skip
    assert answers == [202] * 20 + [429]


def test_strangers_invites_never_hold_back_an_addresses_own_letters(signup, server) -> None:
    address = unique_email("Bob")
    for name in ("Ann", "Cat"):  # 2 x 6 invites: more than MAIL_PER_HOUR (10) letters to one address
        sharer = signup(name)
        for i in range(6):
            doc = sharer.post("/documents", json={"title": f"{name} {i}"}).json()
            sharer.post(f"/documents/{doc['id']}/collaborators", json={"email": address, "role": "viewer"})
    assert len(mail_sink().mailbox.to(address)) <= 10
    bob = signup("Bob", email=address)  # its verification letter comes, and works
    assert len(bob.get("/documents").json()["items"]) == 12
    assert httpx.post(f"{server.url}/auth/password/forgot", json={"email": address}).status_code == 202
    mail_sink().mailbox.wait(address, "#reset=")


def test_an_address_with_mail_syntax_specials_is_refused(signup) -> None:
    ann = signup("Ann")
    doc = ann.post("/documents", json={"title": "t"}).json()
    sneaky_ones = ("alice,mallory@example.com", '"n1"<victim@example.com>', "x:m@example.com;", "a(b)@example.com",
                   "=?utf-8?q?x?=@example.com", "=?utf-8?b?@x?=~0.com", "a\x00b@ex.com", "a\x85b@ex.com")  # fmt: skip
    for sneaky in sneaky_ones:
        answer = ann.post(f"/documents/{doc['id']}/collaborators", json={"email": sneaky, "role": "viewer"})
        assert answer.status_code == 422, sneaky


def test_another_member_adding_the_same_address_does_not_take_the_invite_over(signup) -> None:
    ann, cat = signup("Ann"), signup("Cat")
    room = ann.post("/rooms", json={"name": "r", "members": [cat.email]}).json()
    address = unique_email("Bob")
    first = ann.post(f"/rooms/{room['id']}/members", json={"email": address}).json()["invite"]
    again = cat.post(f"/rooms/{room['id']}/members", json={"email": address})
    assert again.status_code == 202 and again.json()["invite"]["id"] == first["id"]
    assert [i["id"] for i in ann.get("/invites").json()["items"]] == [first["id"]]
    assert cat.delete(f"/invites/{first['id']}").status_code == 404


def test_a_hand_made_invite_with_an_operator_for_a_target_gives_nothing(signup, db) -> None:
    ann = signup("Ann")
    secret = ann.post("/documents", json={"title": "Secret plan"}).json()
    address = unique_email("Bob")
    forged = {"email": address, "kind": "document", "target": {"$ne": None}, "by": {"$exists": True},
              "role": "editor", "created_at": datetime.now(UTC)}  # fmt: skip
    db.invites.insert_one(forged, bypass_document_validation=True)
    bob = signup("Bob", email=address)
    assert bob.get(f"/documents/{secret['id']}").status_code == 404
    assert db.invites.count_documents({"email": address}) == 0


def test_an_invite_whose_inviter_left_the_room_passes_to_the_member_who_adds_the_address_again(signup) -> None:
    ann, mallory = signup("Ann"), signup("Mallory")
    room = ann.post("/rooms", json={"name": "r", "members": [mallory.email]}).json()
    address = unique_email("Newbie")
    planted = mallory.post(f"/rooms/{room['id']}/members", json={"email": address}).json()["invite"]
    assert mallory.delete(f"/rooms/{room['id']}/members/{mallory.id}").status_code == 200
    again = ann.post(f"/rooms/{room['id']}/members", json={"email": address})
    assert again.status_code == 202 and again.json()["invite"]["id"] == planted["id"]
    assert [i["id"] for i in ann.get("/invites").json()["items"]] == [planted["id"]]
    newbie = signup("Newbie", email=address)
    assert newbie.get(f"/rooms/{room['id']}/messages").status_code == 200
