"""The status table and the decisions over the gateway's record, with no gateway and no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import braintree

from service.payments.states import (
    GATEWAY_STATUS,
    REFUNDABLE,
    VOIDABLE,
    Record,
    chosen_sale,
    extra_charges,
    meaning,
    settles_at,
    standing_refunds,
    truth,
)


def sale(status: str, id: str = "s1", refunds: tuple[str, ...] = ()) -> Record:
    return Record(id=id, kind="sale", status=status, amount=Decimal("19.99"), refunds=refunds)


def test_every_status_braintree_defines_has_a_row_in_the_table() -> None:
    defined = {value for name, value in vars(braintree.Transaction.Status).items() if not name.startswith("_")}
    assert defined == set(GATEWAY_STATUS)


def test_a_status_nobody_knows_never_counts_as_money_taken() -> None:
    assert meaning("unrecognized") == "failed"


def test_what_can_be_voided_or_refunded_was_a_charge() -> None:
    assert all(GATEWAY_STATUS[status] == "paid" for status in VOIDABLE | REFUNDABLE)
    assert not VOIDABLE & REFUNDABLE


def test_a_charge_is_chosen_over_later_declined_attempts() -> None:
    records = [sale("submitted_for_settlement", "a"), sale("processor_declined", "b")]
    assert chosen_sale(records) == records[0]
    assert chosen_sale([sale("processor_declined", "b"), sale("failed", "c")]).id == "c"
    assert chosen_sale([Record("r", "credit", "settled", Decimal("1"), refunded="x")]) is None


def test_a_charge_with_a_refund_is_refunded_whether_the_sale_or_the_search_shows_it() -> None:
    assert truth(sale("settled", refunds=("r1",)), []) == "refunded"
    credit = Record("r1", "credit", "submitted_for_settlement", Decimal("19.99"), refunded="s1")
    assert truth(sale("settled"), [credit]) == "refunded"
    assert truth(sale("settled"), []) == "paid"
    assert truth(sale("voided"), []) == "voided"


def test_a_call_is_conclusive_after_its_deadline_and_the_settle_delay() -> None:
    started, window = datetime(2026, 1, 1, tzinfo=UTC), timedelta(seconds=80)
    assert settles_at(started, window, started) == started + window
    assert settles_at(None, window, started) is None and settles_at("yesterday", window, started) is None


def test_a_start_later_than_any_clock_skew_explains_is_not_waited_for() -> None:
    stamp, window = datetime(2026, 1, 1, tzinfo=UTC), timedelta(seconds=80)
    assert settles_at(stamp + timedelta(seconds=30), window, stamp) == stamp + timedelta(seconds=110)
    assert settles_at(datetime(3000, 1, 1, tzinfo=UTC), window, stamp) is None


def test_a_refund_that_failed_gave_nothing_back() -> None:
    declined = Record("r1", "credit", "settlement_declined", Decimal("19.99"), refunded="s1")
    assert truth(sale("settled", refunds=("r1",)), [declined]) == "paid"
    assert standing_refunds(sale("settled", refunds=("r1", "r2")), [declined]) == ["r2"]


def test_every_charge_but_the_one_an_order_keeps_is_a_second_charge() -> None:
    records = [sale("settled", "a"), sale("submitted_for_settlement", "b"), sale("voided", "c"),
               sale("settled", "d", refunds=("r",)), sale("processor_declined", "e")]  # fmt: skip
    assert [extra.id for extra in extra_charges(records, "b")] == ["a"]
    assert [extra.id for extra in extra_charges(records, None)] == ["a", "b"]
