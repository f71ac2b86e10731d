"""The dashboard's live co-editor (handlers/static/editor.js, the `doc` stream) in headless Chromium:
two people typing into the same line at once, typing offline and merging on return, and a viewer.

Screenshots go to var/test-artifacts/dashboard/.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect

from .harness import Account, Server, wait_for
from .test_dashboard import shared, sign_in, snap

# Quick save points, so the body's versions move while the tests run, as they do in use.
SERVER_ENV = {"COEDIT_SAVE_AFTER": "1"}
SAVED = re.compile(r"^Saved version \d+\.$")
OFFLINE = "offline — your typing will be merged when the connection returns"
# The text the editor shows, line by line, without the widgets in it (remote carets and their names).
SHOWN_TEXT = """content => [...content.querySelectorAll(".cm-line")].map((line) => {
  const copy = line.cloneNode(true);
  for (const widget of copy.querySelectorAll(".cm-ySelectionCaret, .cm-widgetBuffer")) widget.remove();
  return copy.textContent;
}).join("\\n")"""

Signup = Callable[..., Account]
Window = Callable[[Account], Page]

expect.set_options(timeout=20_000)


@pytest.fixture(scope="module")
def server_env() -> dict[str, str]:
    return SERVER_ENV


@pytest.fixture
def window(browser: Browser, server: Server) -> Iterator[Window]:
    """`window(ann)`: a new browser window (its own context) where ann has signed in through the form."""
    contexts: list[BrowserContext] = []

    def open_as(account: Account) -> Page:
        context = browser.new_context(base_url=server.url, viewport={"width": 1200, "height": 900})
        contexts.append(context)
        return sign_in(context.new_page(), account)

    yield open_as
    for context in contexts:
        context.close()


def body(page: Page) -> Locator:
    """The live editor's text box (CodeMirror's contenteditable, labelled "Body")."""
    return page.get_by_role("textbox", name="Body")


def shown(page: Page) -> str:
    return str(body(page).evaluate(SHOWN_TEXT))


def open_document(page: Page, doc: dict[str, Any]) -> None:
    page.goto(f"/#/documents/{doc['id']}")
    expect(page.get_by_label("Title", exact=True)).to_have_value(doc["title"])
    expect(page.locator("[data-live-status]")).to_have_text("synced")


def same_text(pages: list[Page], what: str, check: Callable[[str], bool], timeout: float = 30) -> str:
    """Wait until every page shows one text, and `check` accepts it; that text."""

    def agreed() -> str | None:
        texts = {shown(page) for page in pages}
        text = texts.pop() if len(texts) == 1 else None
        return text if text is not None and check(text) else None

    text = wait_for(agreed, timeout, what, seen=lambda: f"the pages show {[shown(page) for page in pages]!r}")
    assert text is not None
    return text


def subsequence(part: str, whole: str) -> bool:
    letters = iter(whole)
    return all(letter in letters for letter in part)


def stored_body(account: Account, doc: dict[str, Any]) -> str:
    return str(account.get(f"/documents/{doc['id']}").json()["body"])


def test_two_people_type_into_one_line_at_once_and_keep_every_keystroke(signup: Signup, window: Window) -> None:
    ann, bob = signup("Ann"), signup("Bob")
    doc = shared(ann, bob, "Launch plan")
    start = "Plan:"
    assert ann.patch(f"/documents/{doc['id']}", json={"body": start}).status_code == 200
    a, b = window(ann), window(bob)
    for page in (a, b):
        open_document(page, doc)
        expect(body(page)).to_be_editable()
    same_text([a, b], "the text from REST in both editors", lambda text: text == start)

    # Both put their cursor at the end of the same line, then type at the same time: one keystroke
    # each in turn, without waiting for anything between them.
    for page in (a, b):
        body(page).click()
        page.keyboard.press("End")
    ann_typed, bob_typed = "abcdefghijklmnopqrst", "ABCDEFGHIJKLMNOPQRST"
    for ann_key, bob_key in zip(ann_typed, bob_typed, strict=True):
        a.keyboard.type(ann_key)
        b.keyboard.type(bob_key)

    def every_keystroke(text: str) -> bool:
        rest = text.removeprefix(start)
        return (text.startswith(start) and len(rest) == 40 and sorted(rest) == sorted(ann_typed + bob_typed)
                and subsequence(ann_typed, rest) and subsequence(bob_typed, rest))  # fmt: skip

    merged = same_text([a, b], "both editors to show all 40 keystrokes", every_keystroke)
    # Each sees the other's cursor, with a name.
    expect(a.locator(".cm-ySelectionInfo", has_text="Bob")).to_be_visible()
    expect(b.locator(".cm-ySelectionInfo", has_text="Ann")).to_be_visible()
    for page in (a, b):
        expect(page.locator("[data-live-status]")).to_have_text("synced")
    snap(a, "coediting")
    wait_for(lambda: stored_body(ann, doc) == merged, 20, "the server to store the merged text",
             seen=lambda: f"it has {stored_body(ann, doc)!r}")  # fmt: skip

    # An explicit save point; title and abstract are still saved with Save (If-Match), not the body.
    a.get_by_role("button", name="Save version").click()
    expect(a.locator("[data-saved]")).to_have_text(SAVED)
    a.get_by_label("Title", exact=True).fill("Launch plan (final)")
    with a.expect_request(lambda r: r.method == "PATCH") as patched:
        a.get_by_role("button", name="Save", exact=True).click()
    assert "body" not in (patched.value.post_data_json or {})
    expect(a.locator("[data-saved]")).to_have_text(SAVED)
    expect(b.get_by_label("Title", exact=True)).to_have_value("Launch plan (final)")
    assert stored_body(ann, doc) == merged


def test_typing_offline_is_merged_when_the_connection_returns(signup: Signup, window: Window) -> None:
    ann, bob = signup("Ann"), signup("Bob")
    doc = shared(ann, bob, "Notes")
    assert ann.patch(f"/documents/{doc['id']}", json={"body": "one\ntwo"}).status_code == 200
    a, b = window(ann), window(bob)
    for page in (a, b):
        open_document(page, doc)
    same_text([a, b], "the text in both editors", lambda text: text == "one\ntwo")

    b.context.set_offline(True)
    expect(b.locator("[data-live-status]")).to_have_text(OFFLINE)
    expect(b.locator("#status")).to_have_text("offline")  # the page closed its socket: the browser said so
    body(b).click()
    b.keyboard.press("Control+End")
    b.keyboard.type(" (Bob offline)")
    # Meanwhile Ann, online, types on the first line.
    body(a).click()
    a.keyboard.press("Control+Home")
    a.keyboard.press("End")
    a.keyboard.type(" (Ann online)")
    same_text([a], "Ann's typing in her editor", lambda text: text == "one (Ann online)\ntwo")
    wait_for(lambda: stored_body(ann, doc) == "one (Ann online)\ntwo", 20, "Ann's typing to be stored")
    assert shown(b) == "one\ntwo (Bob offline)"  # nothing reached Bob, nothing left him
    expect(b.locator("[data-live-status]")).to_have_text(OFFLINE)
    snap(b, "coediting-offline")

    b.context.set_offline(False)
    merged = "one (Ann online)\ntwo (Bob offline)"
    same_text([a, b], "both editors to show the merged text", lambda text: text == merged)
    expect(b.locator("[data-live-status]")).to_have_text("synced")
    wait_for(lambda: stored_body(ann, doc) == merged, 20, "the merged text to be stored",
             seen=lambda: f"it has {stored_body(ann, doc)!r}")  # fmt: skip


def test_a_viewer_sees_the_text_live_and_cannot_change_it(signup: Signup, window: Window) -> None:
    ann, vic = signup("Ann"), signup("Vic")
    doc = shared(ann, vic, "Report", role="viewer")
    a, v = window(ann), window(vic)
    for page in (a, v):
        open_document(page, doc)
    expect(body(v)).not_to_be_editable()
    expect(body(v)).to_have_attribute("aria-readonly", "true")
    expect(v.locator("[data-readonly]")).to_contain_text("only its owner and editors can change it")
    expect(v.get_by_role("button", name="Save version")).to_be_hidden()

    body(a).click()
    a.keyboard.type("Written by Ann")
    same_text([a, v], "Ann's text in the viewer's editor", lambda text: text == "Written by Ann")
    body(v).click()
    v.keyboard.press("End")
    v.keyboard.type("Vic was here")  # nothing happens: the editor takes no input
    expect(v.locator("[data-live-status]")).to_have_text("synced")
    assert shown(v) == "Written by Ann" and shown(a) == "Written by Ann"
    assert stored_body(ann, doc) == "Written by Ann"
    snap(v, "coediting-viewer")


def test_title_and_abstract_are_saved_with_if_match_and_a_lost_race_shows_theirs_and_mine(
    signup: Signup, window: Window
) -> None:
    ann, bob = signup("Ann"), signup("Bob")
    doc = shared(ann, bob, "Budget")
    a, b = window(ann), window(bob)
    for page in (a, b):
        open_document(page, doc)
    # Live typing makes save points (the version moves on) without touching the title: no conflict.
    body(a).click()
    a.keyboard.type("Travel and tooling")
    same_text([a, b], "the body in both editors", lambda text: text == "Travel and tooling")
    expect(b.locator("[data-version]")).not_to_have_text("version 1")  # a save point of the body
    b.get_by_label("Abstract").fill("What we spend in 2027")
    b.get_by_role("button", name="Save", exact=True).click()
    expect(b.locator("[data-saved]")).to_have_text(SAVED)
    expect(a.get_by_label("Abstract")).to_have_value("What we spend in 2027")

    # Both change the title; Ann saves first.
    b.get_by_label("Title", exact=True).fill("Budget 2027")
    a.get_by_label("Title", exact=True).fill("Budget (draft)")
    a.get_by_role("button", name="Save", exact=True).click()
    expect(a.locator("[data-saved]")).to_have_text(SAVED)
    expect(b.locator("[data-newer]")).to_contain_text("Ann saved version")
    expect(b.get_by_label("Title", exact=True)).to_have_value("Budget 2027")  # his unsaved title is kept
    b.get_by_role("button", name="Save", exact=True).click()
    conflict = b.locator("[data-conflict]")
    expect(conflict.locator("[data-theirs]")).to_have_text("Title: Budget (draft)")
    expect(conflict.locator("[data-mine]")).to_have_text("Title: Budget 2027")
    snap(b, "coediting-title-conflict")
    conflict.get_by_role("button", name="Edit a merge of both").click()
    expect(b.get_by_label("Title", exact=True)).to_have_value("Budget (draft) / Budget 2027")
    b.get_by_role("button", name="Save", exact=True).click()
    expect(b.locator("[data-saved]")).to_have_text(SAVED)
    expect(a.get_by_label("Title", exact=True)).to_have_value("Budget (draft) / Budget 2027")
    current = ann.get(f"/documents/{doc['id']}").json()
    assert (current["title"], current["abstract"], current["body"]) == (
        "Budget (draft) / Budget 2027", "What we spend in 2027", "Travel and tooling")  # fmt: skip
