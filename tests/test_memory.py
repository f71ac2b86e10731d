"""Memory one client can hold on the server is bounded in bytes, whatever it subscribes to."""

from __future__ import annotations

import pytest

from .feed import Feed


@pytest.fixture(scope="module")
def server_env() -> dict[str, str]:
    # The default WS_SEND_QUEUE of 1000 frames; a write budget that lets the test write 30 MB.
    return {"WS_SEND_BYTES": str(1 << 20), "WRITE_BUDGET": str(1 << 30)}


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
        # 150 frames of 200 KB: 30 MB, more than the limit below, against WS_SEND_BYTES = 1 MiB (the
        # frame count alone, 150 of 1000, would let them all wait).
        for i in range(150):
            ann.patch(f"/documents/{doc['id']}", json={"abstract": str(i)})
        grown = resident_bytes(ann) - before
        assert grown < 24 * 1024 * 1024, f"the worker grew by {grown / 2**20:.0f} MiB"
        assert never_reads.closed_with() == 4008
