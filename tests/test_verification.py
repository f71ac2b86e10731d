"""Verified email: the letter goes out over real SMTP, its code proves the address once, and a letter
is never lost to a crash between creating the account and sending it."""

from __future__ import annotations

import asyncio
import socket
import threading
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from bson import ObjectId

from deploy.local.mailsink import MailSink, code_in, text_of
from service.config import Settings
from service.mail.letters import Letter, message
from service.mail.smtp import MailDelayed, Mailer

from .harness import Account, Server, mail_sink, unique_email, wait_for


def test_a_new_account_is_unverified_until_the_code_from_its_letter_is_used(server, signup) -> None:
    ann = signup("Ann", verified=False)
    assert ann.user["email_verified"] is False
    letter = mail_sink().mailbox.wait(ann.email, "#verify=")[0]
    assert letter["Subject"] == "Verify your email address for Murmuration"
    assert letter["From"] == "Murmuration <murmuration@localhost>"
    assert f"http://127.0.0.1:{server.port}/#verify=" in text_of(letter)
    assert ann.get("/auth/me").json()["user"]["email_verified"] is False
    code = code_in(letter, "verify")
    verified = httpx.post(f"{server.url}/auth/verify", json={"token": code})  # no bearer token needed
    assert verified.status_code == 200 and verified.json()["user"] == {**ann.user, "email_verified": True}
    assert ann.get("/auth/me").json()["user"]["email_verified"] is True
    again = httpx.post(f"{server.url}/auth/verify", json={"token": code})
    assert again.status_code == 400 and again.json()["error"]["code"] == "bad_request"


def test_an_unknown_or_expired_code_is_a_400_and_proves_nothing(server, signup, db) -> None:
    ann = signup("Ann", verified=False)
    code = code_in(mail_sink().mailbox.wait(ann.email, "#verify=")[0], "verify")
    for made_up in ("mmv_made-up", "", "x" * 500, {"$ne": None}):
        answer = httpx.post(f"{server.url}/auth/verify", json={"token": made_up})
        assert answer.status_code in (400, 422), made_up
    db.tokens.update_many(
        {"user": ObjectId(ann.id)}, {"$set": {"expires_at": datetime.now(UTC) - timedelta(seconds=1)}}
    )
    assert httpx.post(f"{server.url}/auth/verify", json={"token": code}).status_code == 400
    assert ann.get("/auth/me").json()["user"]["email_verified"] is False


def test_a_letter_can_be_sent_again_until_the_address_is_verified(server, signup) -> None:
    ann = signup("Ann", verified=False)
    assert ann.post("/auth/verify/resend").status_code == 202
    first, second = mail_sink().mailbox.wait(ann.email, "#verify=", count=2)
    assert code_in(first, "verify") != code_in(second, "verify")
    assert httpx.post(f"{server.url}/auth/verify", json={"token": code_in(first, "verify")}).status_code == 200
    assert ann.post("/auth/verify/resend").json()["error"]["code"] == "conflict"


def test_resending_is_limited(signup) -> None:
    ann = signup("Ann", verified=False)
    answers = [ann.post("/auth/verify/resend").status_code for _ in range(4)]
    assert answers == [202, 202, 202, 429]


def test_health_tells_where_letters_go_and_how_many_wait(signup) -> None:
    mail = signup("Ann").get("/health").json()["mail"]
    assert mail["delivery"] == "smtp" and isinstance(mail["waiting"], int)


class SilentSmtp:
    """A mail server that accepts connections and never says a word: a send hangs until its deadline."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.listener.close()
        for conn in self.held:
            conn.close()


def test_a_crash_while_the_letter_is_being_sent_still_sends_it_once(mongo_url, mongo) -> None:
    name = f"t_mail_crash_{ObjectId()}"
    silent = SilentSmtp()
    email = unique_email("Crash")
    try:
        first = Server(mongo_url, name, env={"SMTP_URL": f"smtp://127.0.0.1:{silent.port}", "SMTP_TIMEOUT": "5"})
        first.start()
        registered = httpx.post(
            f"{first.url}/auth/register", json={"email": email, "password": "correct horse", "name": "C"}
        )
        assert registered.status_code == 201
        outbox = mongo[name].outbox
        wait_for(
            lambda: outbox.find_one({"to": email, "status": "sending"}),
            20,
            "the letter to be in the middle of its send",
        )
        first.kill()
        with Server(mongo_url, name, env={"SMTP_TIMEOUT": "5"}) as second:  # the real sink this time
            letter = mail_sink().mailbox.wait(email, "#verify=", timeout=40)[0]
            wait_for(lambda: outbox.find_one({"to": email, "status": "sent"}), 20, "the letter to be recorded as sent")
            account = Account(base_url=second.url, timeout=30)
            assert account.post("/auth/verify", json={"token": code_in(letter, "verify")}).status_code == 200
            account.close()
        assert len(mail_sink().mailbox.to(email)) == 1
        assert outbox.find_one({"to": email})["attempts"] == 2
    finally:
        silent.close()
        mongo.drop_database(name)


def test_letters_wait_while_the_mail_server_is_down_and_say_why(mongo_url, mongo) -> None:
    name = f"t_mail_down_{ObjectId()}"
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    try:
        with Server(mongo_url, name, env={"SMTP_URL": f"smtp://127.0.0.1:{port}", "MAIL_BACKOFF": "0.1"}) as server:
            email = unique_email("Down")
            httpx.post(f"{server.url}/auth/register", json={"email": email, "password": "correct horse", "name": "D"})
            outbox = mongo[name].outbox
            wait_for(lambda: (outbox.find_one({"to": email}) or {}).get("attempts", 0) >= 2, 20, "two attempts")
            letter = outbox.find_one({"to": email})
            assert letter["status"] in ("pending", "sending") and letter["last_error"]
            assert httpx.get(f"{server.url}/health").json()["mail"]["waiting"] >= 1
    finally:
        mongo.drop_database(name)


def test_a_signed_in_caller_can_only_verify_their_own_account(server, signup) -> None:
    squatted = signup("Mallory", verified=False)  # someone registered an address that is not theirs
    owner = signup("Alice")  # ... whose owner, signed in to her own account, opens the link
    code = code_in(mail_sink().mailbox.wait(squatted.email, "#verify=")[0], "verify")
    assert owner.post("/auth/verify", json={"token": code}).status_code == 400
    assert squatted.get("/auth/me").json()["user"]["email_verified"] is False
    letter = text_of(mail_sink().mailbox.wait(squatted.email, "#verify=")[0])
    assert "Mallory" not in letter and "Forgot your password?" in letter  # no name the squatter chose


def test_a_letter_the_shell_left_unclaimable_never_holds_the_others(server, signup, db) -> None:
    stamp = datetime.now(UTC)
    for attempts in (None, "3", 2**63 - 1, 0.0):
        db.outbox.insert_one({"kind": "reset", "to": unique_email("ghost"), "status": "pending", "next_at": stamp,
                              "created_at": stamp, "attempts": attempts}, bypass_document_validation=True)  # fmt: skip
    ann = signup("Ann")  # its verification letter still comes (signup reads and uses it)
    assert ann.user["email_verified"] is True
    health = ann.get("/health").json()
    assert health["tasks"]["mail"] == {"state": "running", "restarts": 0}


def test_a_password_is_never_sent_in_clear_to_a_server_that_is_not_this_host() -> None:
    plain = MailSink(hostname="127.0.0.2").start()  # another address than this host's: no STARTTLS offered
    try:
        smtp = Settings.from_env({"SMTP_URL": f"smtp://mailer:secret@127.0.0.2:{plain.port}"}).smtp
        assert smtp is not None
        mailer = Mailer(smtp, 5.0, "Murmuration <murmuration@localhost>")
        letter = message(Letter("Subject", "text"), "bob@example.com", "murmuration@localhost", "<1@murmuration>")
        with pytest.raises(MailDelayed) as refused:
            asyncio.run(mailer.send(letter, "bob@example.com"))
        assert refused.value.ours and "check SMTP_URL" in str(refused.value)
        assert plain.mailbox.letters == []
    finally:
        plain.stop()


def test_a_letter_no_header_can_hold_fails_alone(server, signup, db) -> None:
    stamp = datetime.now(UTC)
    # An account an older version let in (the address pattern refuses it now), and its letter.
    db.users.insert_one({"email": "=?utf-8?b?@x?=~0.com", "name": "x", "password": "x", "created_at": stamp})
    poisoned = db.outbox.insert_one({"kind": "verify", "to": "=?utf-8?b?@x?=~0.com", "status": "pending",
                                     "next_at": stamp, "created_at": stamp, "attempts": 0}).inserted_id  # fmt: skip
    ann = signup("Ann")  # still verified through its letter
    assert ann.user["email_verified"] is True
    wait_for(lambda: db.outbox.find_one({"_id": poisoned, "status": "failed"}), 20, "the poisoned letter to fail")
    assert ann.get("/health").json()["tasks"]["mail"] == {"state": "running", "restarts": 0}
