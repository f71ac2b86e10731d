"""Yjs's update format read without the engine: what the server takes from a client, and what not."""

from __future__ import annotations

import pytest
from pycrdt import Doc, Map, Text

from service.coediting.yjs import BadUpdate, check, read_awareness, read_update, read_vector
from service.coediting.yjs import varint as uint


def typed(text: str, client: int = 7) -> bytes:
    doc: Doc[Text] = Doc(client_id=client)
    doc.get("body", type=Text).insert(0, text)
    return doc.get_update()


def one_string(client: int, clock: int = 0, text: bytes = b"a") -> bytes:
    """An update of one string struct at the root `body`, from `client` at `clock`."""
    return (
        uint(1)
        + uint(1)
        + uint(client)
        + uint(clock)
        + bytes([4])
        + uint(1)
        + uint(4)
        + b"body"
        + uint(len(text))
        + text
        + uint(0)
    )


def test_text_typed_into_the_body_is_read_with_its_clock_range_in_utf16_units() -> None:
    update = read_update(typed("a😀b"))
    assert update.ranges == {7: (0, 4)} and update.inserted == 4 and not update.deletions


def test_another_shared_type_is_refused() -> None:
    doc: Doc[Map] = Doc()
    doc.get("settings", type=Map)["x"] = 1
    with pytest.raises(BadUpdate, match="only shared type"):
        read_update(doc.get_update())


def test_client_ids_and_clocks_the_engine_would_truncate_are_refused() -> None:
    assert read_update(one_string((1 << 53) - 1)).ranges == {(1 << 53) - 1: (0, 1)}
    with pytest.raises(BadUpdate, match="client id"):
        read_update(one_string(1 << 55))
    with pytest.raises(BadUpdate, match="clock"):
        read_update(one_string(9, clock=1 << 40))


def test_an_update_that_does_not_follow_on_from_what_the_server_has_is_refused() -> None:
    update = read_update(one_string(9, clock=5))
    with pytest.raises(BadUpdate, match="sync first"):
        check(update, {9: 3})
    check(update, {9: 5})


def test_trailing_bytes_and_truncation_are_refused() -> None:
    good = typed("hello")
    for bad in (good + b"\x00", good[:-3], b"\xff" * 12):
        with pytest.raises(BadUpdate):
            read_update(bad)


def test_a_state_vector_reads_as_clocks_by_client() -> None:
    doc: Doc[Text] = Doc(client_id=42)
    doc.get("body", type=Text).insert(0, "abc")
    assert read_vector(doc.get_state()) == {42: 3}


def test_awareness_that_is_not_an_object_or_nests_without_end_is_refused() -> None:
    deep = b'{"a":' + b"[" * 3000 + b"]" * 3000 + b"}"
    for state in (b"[1]", b"{", deep):
        with pytest.raises(BadUpdate):
            read_awareness(uint(1) + uint(5) + uint(1) + uint(len(state)) + state, 1 << 20)


def string_at(client: int, clock: int, origin: tuple[int, int]) -> bytes:
    """One client's one string struct `x` placed after `origin`."""
    return uint(1) + uint(client) + uint(clock) + bytes([4 | 0x80]) + uint(origin[0]) + uint(origin[1]) + uint(1) + b"x"


def test_a_struct_that_refers_to_itself_or_to_one_after_it_is_refused() -> None:
    hello = read_vector(typed_state("Hello"))
    for origin in ((9, 0), (9, 1)):  # itself; the next one
        update = read_update(uint(1) + string_at(9, 0, origin) + uint(0))
        with pytest.raises(BadUpdate, match="sync first"):
            check(update, hello)


def test_two_clients_structs_that_refer_to_each_other_are_refused() -> None:
    cycle = uint(2) + string_at(8, 0, (9, 0)) + string_at(9, 0, (8, 0)) + uint(0)
    with pytest.raises(BadUpdate, match="sync first"):
        check(read_update(cycle), read_vector(typed_state("Hello")))


def test_an_update_carrying_another_clients_new_text_it_builds_on_is_taken() -> None:
    # Client 8 typed after client 9's new `x`, and sends both (as a peer synced offline would).
    merged = uint(2) + string_at(8, 0, (9, 0)) + string_at(9, 0, (7, 4)) + uint(0)
    check(read_update(merged), read_vector(typed_state("Hello")))


def typed_state(text: str, client: int = 7) -> bytes:
    doc: Doc[Text] = Doc(client_id=client)
    doc.get("body", type=Text).insert(0, text)
    return doc.get_state()
