"""The dashboard at `/`, driven in headless Chromium like two people in two browser windows.

Screenshots of the main views are saved in var/test-artifacts/dashboard/.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from deploy.local.gateway import GatewayServer
from deploy.local.mailsink import text_of

from .harness import ROOT, Account, Server, mail_sink, payments_env, unique_email, wait_for

ARTIFACTS = ROOT / "var" / "test-artifacts" / "dashboard"
# Records the notifications the page raises, so a test can see them (headless Chromium shows none).
NOTIFICATION_SPY = """
window.__notifications = [];
const Real = window.Notification;
window.Notification = class extends Real {
  constructor(title, options) {
    super(title, options);
    window.__notifications.push({title, body: options && options.body});
  }
};
"""

expect.set_options(timeout=20_000)


@pytest.fixture(scope="module")
def server_env(gateway: GatewayServer) -> dict[str, str]:
    return payments_env(gateway)


def sign_in(page: Page, account: Account) -> Page:
    """Sign `account` in through the page's form, and wait for the live feed."""
    page.goto("/")
    form = page.locator("#signin-form")
    form.get_by_label("Email").fill(account.email)
    form.get_by_label("Password").fill(account.password)
    form.get_by_role("button", name="Sign in").click()
    expect(page.locator("#status")).to_have_text("live")
    expect(page.locator("#me")).to_have_text(account.user["name"])
    return page


@pytest.fixture
def window(browser: Browser, server: Server) -> Iterator[Callable[[Account], Page]]:
    """`window(ann)`: a new browser window (its own context) where ann has signed in through the form."""
    contexts: list[BrowserContext] = []

    def open_as(account: Account) -> Page:
        context = browser.new_context(base_url=server.url, viewport={"width": 1200, "height": 900})
        context.grant_permissions(["notifications"], origin=server.url)
        context.add_init_script(NOTIFICATION_SPY)
        contexts.append(context)
        return sign_in(context.new_page(), account)

    yield open_as
    for context in contexts:
        context.close()


def snap(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def shared(owner: Account, other: Account, title: str, role: str = "editor") -> dict:
    doc = owner.post("/documents", json={"title": title}).json()
    answer = owner.post(f"/documents/{doc['id']}/collaborators", json={"email": other.email, "role": role})
    assert answer.status_code == 200, answer.text
    return doc


def test_a_newcomer_signs_up_and_lands_on_an_empty_dashboard(browser: Browser, server: Server) -> None:
    context = browser.new_context(base_url=server.url)
    try:
        page = context.new_page()
        page.goto("/")
        page.get_by_role("button", name="Create an account instead").click()
        form = page.locator("#signin-form")
        form.get_by_label("Email").fill("not an email")
        form.get_by_label("Password").fill("long enough password")
        page.get_by_label("Your name").fill("Nia")
        page.get_by_role("button", name="Create account").click()
        expect(page.locator("#signin-error")).to_contain_text("email")  # the API's error, for people
        form.get_by_label("Email").fill(unique_email("nia"))
        page.get_by_role("button", name="Create account").click()
        expect(page.locator("#status")).to_have_text("live")
        expect(page.get_by_role("heading", name="Documents")).to_be_visible()
        expect(page.locator("[data-list]")).to_contain_text("No documents yet.")
        expect(page.locator("#online")).to_have_text(re.compile(r"online: [1-9]\d*"))
        snap(page, "signed-up")
        page.set_viewport_size({"width": 375, "height": 740})  # a phone: nothing wider than the screen
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        snap(page, "phone-width")
        page.keyboard.press("Tab")  # the keyboard alone: the view has focus, its first field is next
        expect(page.get_by_label("New document title")).to_be_focused()
        page.keyboard.type("Typed, not clicked")
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", name="Typed, not clicked")).to_be_visible()
        page.reload()  # the token is kept: still signed in
        expect(page.locator("#status")).to_have_text("live")
        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    finally:
        context.close()


def test_a_newcomer_verifies_invites_a_colleague_and_resets_a_forgotten_password(
    browser: Browser, server: Server
) -> None:
    context = browser.new_context(base_url=server.url)
    email, colleague = unique_email("nia"), unique_email("colleague")
    try:
        page = context.new_page()
        page.goto("/")
        page.get_by_role("button", name="Create an account instead").click()
        form = page.locator("#signin-form")
        form.get_by_label("Email").fill(email)
        form.get_by_label("Password").fill("long enough password")
        page.get_by_label("Your name").fill("Nia")
        page.get_by_role("button", name="Create account").click()
        expect(page.locator("#verify-banner")).to_contain_text(email)
        # The letter, read from the local mail sink, holds the link that proves the address.
        link = re.search(r"http://\S+/(#verify=\S+)", text_of(mail_sink().mailbox.wait(email, "#verify=")[0]))
        assert link is not None
        page.goto(f"/{link.group(1)}")
        expect(page.locator(".toast", has_text="Your address is verified.")).to_be_visible()
        expect(page.locator("#verify-banner")).to_be_hidden()
        # Shared before the colleague has an account: a pending invite, shown on the account page.
        page.get_by_label("New document title").fill("Roadmap")
        page.get_by_role("button", name="Create", exact=True).click()
        expect(page.get_by_role("heading", name="Roadmap")).to_be_visible()
        page.get_by_label("Share with (email)").fill(colleague)
        page.get_by_role("button", name="Share").click()
        expect(page.locator(".toast", has_text=f"{colleague} is invited")).to_be_visible()
        page.get_by_role("link", name="Account").click()
        expect(page.locator("[data-invites]")).to_contain_text(colleague)
        expect(page.locator("[data-sessions]")).to_contain_text("(this one)")
        snap(page, "account")
        # The colleague signs up and verifies: the document is theirs, the invite is gone.
        joined = Account.register(server.url, "Colleague", email=colleague)
        documents = joined.get("/documents").json()["items"]
        assert [d["title"] for d in documents] == ["Roadmap"]
        joined.close()
        page.reload()
        expect(page.locator("[data-invites]")).to_contain_text("None.")
        # A forgotten password: the reset link from the letter, then signing in with the new one.
        page.locator("#signout").click()
        page.get_by_role("button", name="Forgot your password?").click()
        page.locator("#forgot-form").get_by_label("Email").fill(email)
        page.get_by_role("button", name="Mail me a reset link").click()
        expect(page.locator("#signin-notice")).to_contain_text("a letter with a reset link is on its way")
        reset = re.search(r"http://\S+/(#reset=\S+)", text_of(mail_sink().mailbox.wait(email, "#reset=")[0]))
        assert reset is not None
        page.goto(f"/{reset.group(1)}")
        page.get_by_label("New password").fill("another long password")
        page.get_by_role("button", name="Set the new password").click()
        expect(page.locator("#signin-notice")).to_contain_text("Your password is changed")
        form.get_by_label("Email").fill(email)
        form.get_by_label("Password").fill("another long password")
        form.get_by_role("button", name="Sign in").click()
        expect(page.locator("#status")).to_have_text("live")
    finally:
        context.close()


def test_two_people_see_each_others_presence_typing_and_saves_live(signup, window) -> None:
    ann, bob = signup("Ann"), signup("Bob")
    a, b = window(ann), window(bob)

    a.get_by_label("New document title").fill("Launch plan")
    a.get_by_role("button", name="Create", exact=True).click()
    expect(a.get_by_role("heading", name="Launch plan")).to_be_visible()
    a.get_by_label("Share with (email)").fill(bob.email)
    a.get_by_role("button", name="Share").click()
    expect(a.locator("[data-people]")).to_contain_text("Bob (editor)")

    # Bob's list gains the document, with Ann shown editing it (her live editor is open), without a reload.
    row = b.locator("[data-list] li", has_text="Launch plan")
    expect(row.locator(".badge.editing")).to_have_text("editing: Ann")
    expect(b.locator(".toast", has_text="Ann shared “Launch plan” with you")).to_be_visible()
    snap(b, "documents-with-presence")

    row.get_by_role("link", name="Launch plan").click()
    expect(a.locator("[data-presence] .badge.editing")).to_contain_text("Bob")
    a.locator(".cm-content").click()
    a.keyboard.type("Ship it on Monday.")
    expect(b.locator(".cm-content")).to_contain_text("Ship it on Monday.")  # typed live, no save needed
    snap(b, "document-live")

    # A save by someone else is a notification (and a toast) that opens the document.
    b.get_by_role("link", name="Documents", exact=True).click()
    a.get_by_label("Title", exact=True).fill("Launch plan, final")
    a.get_by_role("button", name="Save", exact=True).click()
    toast = b.locator(".toast", has_text="Ann saved “Launch plan").last
    expect(toast).to_be_visible()
    notifications = b.evaluate("window.__notifications")
    assert any(n["title"].startswith("Ann saved “Launch plan") for n in notifications), notifications
    toast.click()
    expect(b.get_by_label("Title", exact=True)).to_have_value("Launch plan, final")
    expect(b.locator(".cm-content")).to_contain_text("Ship it on Monday.")


# The conflict view (title and abstract; the body merges live) is in test_coediting_browser.py.


def test_chat_between_two_windows_with_unread_counts_and_typing(signup, window) -> None:
    ann, bob = signup("Ann"), signup("Bob")
    a, b = window(ann), window(bob)
    b.get_by_role("link", name="Chat").click()
    a.get_by_role("link", name="Chat").click()
    a.get_by_label("New room").fill("Standup")
    a.get_by_label("Members (emails, comma separated)").fill(bob.email)
    a.get_by_role("button", name="Create room").click()
    expect(a.get_by_role("heading", name="Standup")).to_be_visible()

    room = b.locator("[data-rooms] li", has_text="Standup")
    expect(room).to_be_visible()  # the new room appears for Bob live
    a.get_by_label("Message", exact=True).fill("Morning! Anything blocking?")
    a.get_by_role("button", name="Send").click()
    expect(room.locator(".badge")).to_have_text("1")
    expect(b.locator("#unread-total")).to_have_text("1")

    room.get_by_role("link", name="Standup").click()
    expect(b.locator("[data-messages]")).to_contain_text("Morning! Anything blocking?")
    expect(b.locator("#unread-total")).to_be_hidden()
    b.get_by_label("Message", exact=True).press_sequentially("Not")
    expect(a.locator("[data-typing]")).to_have_text("Bob is typing…")
    b.get_by_label("Message", exact=True).fill("Nothing blocking here.")
    b.get_by_role("button", name="Send").click()
    expect(a.locator("[data-messages] li").last).to_contain_text("Nothing blocking here.")
    expect(a.locator("[data-typing]")).to_have_text("")
    snap(a, "chat")
    texts = [m["text"] for m in ann.get(f"/rooms/{room_id(b)}/messages").json()["items"]]
    assert texts == ["Nothing blocking here.", "Morning! Anything blocking?"]


def room_id(page: Page) -> str:
    return page.url.rsplit("/", 1)[-1]


def test_an_order_placed_in_the_page_goes_to_paid_live(signup, window) -> None:
    ann = signup("Ann")
    a = window(ann)
    a.get_by_role("link", name="Orders").click()
    a.get_by_label("Quantity of T-shirt").fill("2")
    a.get_by_label("Visa ending 1111: approved").check()
    a.get_by_role("button", name="Place order").click()
    expect(a.locator("[data-orders] li").first.locator("[data-status]")).to_have_text("paid")
    a.get_by_label("Quantity of Mug").fill("1")
    a.get_by_label("Visa: declined by the bank").check()
    a.get_by_role("button", name="Place order").click()
    expect(a.locator("[data-orders] li").first.locator("[data-status]")).to_have_text("declined")
    snap(a, "orders")
    statuses = sorted(o["status"] for o in ann.get("/orders").json()["items"])
    assert statuses == ["declined", "paid"] and ann.get("/orders").json()["items"][1]["amount"] == "39.98"


# A stand-in for Braintree's Drop-in, served in place of Braintree's CDN (unreachable here): it records
# how the page created it and hands out one single-use nonce.
DROP_IN_STAND_IN = """
window.braintree = { dropin: { create(options) {
  window.__dropIn = { authorization: options.authorization, requested: 0, cleared: 0 };
  const card = document.createElement("p");
  card.textContent = "Card ending 1111 (Drop-in stand-in)";
  options.container.append(card);
  return Promise.resolve({
    requestPaymentMethod() {
      window.__dropIn.requested += 1;
      return Promise.resolve({ nonce: "%s", type: "CreditCard" });
    },
    clearSelectedPaymentMethod() { window.__dropIn.cleared += 1; },
  });
} } };
"""


def test_with_real_credentials_the_page_pays_through_braintree_drop_in(
    browser: Browser, mongo_url: str, server_env: dict[str, str]
) -> None:
    import base64
    import json
    import uuid

    nonce = str(uuid.uuid4())
    asked: list[str] = []
    env = {**server_env, "BRAINTREE_DROPIN": "on"}
    with Server(mongo_url, f"dashboard_dropin_{uuid.uuid4().hex[:6]}", env=env) as dropin_server:
        context = browser.new_context(base_url=dropin_server.url, viewport={"width": 1200, "height": 900})
        try:
            ann = Account.register(dropin_server.url, "Ann")
            policy = httpx.get(f"{dropin_server.url}/").headers["content-security-policy"]
            assert "script-src 'self' https://js.braintreegateway.com" in policy

            def cdn(route) -> None:
                asked.append(route.request.url)
                route.fulfill(status=200, content_type="text/javascript", body=DROP_IN_STAND_IN % nonce)

            context.route("https://js.braintreegateway.com/**", cdn)
            page = sign_in(context.new_page(), ann)
            page.get_by_role("link", name="Orders").click()
            expect(page.locator("[data-drop-in]")).to_contain_text("Drop-in stand-in")
            assert asked == ["https://js.braintreegateway.com/web/dropin/1.43.0/js/dropin.min.js"]
            token = json.loads(base64.b64decode(page.evaluate("window.__dropIn.authorization")))
            assert token["authorizationFingerprint"]  # created with the client token the server issued
            page.get_by_label("Quantity of T-shirt").fill("1")
            with page.expect_request(lambda r: r.url.endswith("/orders") and r.method == "POST") as placed:
                page.get_by_role("button", name="Place order").click()
            assert placed.value.post_data_json["payment_method_nonce"] == nonce
            expect(page.locator("[data-orders] li").first.locator("[data-status]")).to_have_text("paid")
            assert page.evaluate("window.__dropIn.cleared") == 1
            page.get_by_role("button", name="Cancel and refund").click()
            expect(page.locator("[data-orders] li").first.locator("[data-status]")).to_have_text("voided")
            snap(page, "orders-drop-in")
            assert [o["status"] for o in ann.get("/orders").json()["items"]] == ["voided"]
        finally:
            context.close()


def test_after_a_restart_the_page_reconnects_with_nothing_missed_or_twice(server: Server, signup, window) -> None:
    ann, bob = signup("Ann"), signup("Bob")
    room = ann.post("/rooms", json={"name": "Ops", "members": [bob.email]}).json()
    ann.post(f"/rooms/{room['id']}/messages", json={"text": "before the restart"})
    b = window(bob)
    b.goto(f"/#/rooms/{room['id']}")
    expect(b.locator("[data-messages]")).to_contain_text("before the restart")

    server.stop()
    expect(b.locator("#status")).to_have_attribute("data-state", re.compile("reconnecting|connecting"))
    b.get_by_label("Message", exact=True).fill("sent while offline")
    b.get_by_role("button", name="Send").click()  # kept and sent once the feed is back
    snap(b, "reconnecting")
    server.start()
    for i in range(3):
        ann.post(f"/rooms/{room['id']}/messages", json={"text": f"after the restart {i}"})
    expect(b.locator("#status")).to_have_text("live", timeout=60_000)
    lines = b.locator("[data-messages] li .text")
    expected = ["before the restart", "sent while offline", "after the restart 0", "after the restart 1",
                "after the restart 2"]  # fmt: skip
    wait_for(lambda: sorted(lines.all_inner_texts()) == sorted(expected), 30, "every message once",
             seen=lambda: f"the page shows {lines.all_inner_texts()}")  # fmt: skip
    expect(b.locator("[data-messages] li.pending")).to_have_count(0)  # the offline message was acked
    stored = [m["text"] for m in ann.get(f"/rooms/{room['id']}/messages").json()["items"]]
    assert sorted(stored) == sorted(expected)  # the offline message was stored once


def test_the_page_is_served_without_outside_resources(anon: httpx.Client) -> None:
    page = anon.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "braintree" not in page.headers["content-security-policy"]  # the emulator: no Drop-in, no CDN
    assert not re.search(r"(src|href)=\"(https?:)?//", page.text)  # no CDN
    script = anon.get("/app/feed.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    missing = anon.get("/app/../service/config.py")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
