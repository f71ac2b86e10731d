"""Memory one client can hold on the server is bounded in bytes, whatever it subscribes to."""

from __future__ import annotations

import pytest

from .feed import Feed


@pytest.fixture(scope="module")
def server_env() -> dict[str, str]:
    return {"WS_SEND_BYTES": str(1 << 20)}  # and the default WS_SEND_QUEUE of 1000 frames


def resident_bytes(account) -> float:
    """The worker's resident memory, as its own /metrics report it (one worker)."""
    line = next(x for x in account.get("/metrics").text.splitlines() if x.startswith("process_resident_memory_bytes"))
    return float(line.split()[-1])


def test_a_socket_that_never_reads_costs_a_bounded_amount_of_memory(server, signup, db) -> None:
    ann = signup("Ann")
    doc = ann.post("/documents", json={"title": "big", "body": "x" * 200_000}).json()
    with Feed(server, ann) as warm:  # the first large frames allocate what any socket would reuse
        warm.subscribe("d", "documents")
        for i in range(3):
            ann.patch(f"/documents/{doc['id']}", json={"abstract": f"warm {i}"})
            warm.event("d")
    before = resident_bytes(ann)
    with Feed(server, ann, max_queue=1) as never_reads:
        never_reads.subscribe("d", "documents")
        for i in range(100):  # what once let one socket hold 100 copies of every frame
            never_reads.send(type="subscribe", id=f"d{i}", stream="documents")
        for i in range(30):  # 30 frames of 200 KB: 6 MB, against WS_SEND_BYTES = 1 MiB
            ann.patch(f"/documents/{doc['id']}", json={"abstract": str(i)})
        grown = resident_bytes(ann) - before
        code = never_reads.closed_with()
    assert code == 4008
    assert grown < 24 * 1024 * 1024, f"the worker grew by {grown / 2**20:.0f} MiB"
