"""The heap policy (service/heap.py): long-lived objects are frozen out of Python's collections, and
what turns into garbage while frozen comes back at the next thaw, so nothing accumulates."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client import REGISTRY

from service.heap import THAW_CLOSED, Heap, Pauses

from .feed import Feed
from .harness import wait_for


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture
def heap() -> Iterator[Heap]:
    made = Heap(freeze_every=1.0, thaw_every=60.0)
    yield made
    gc.unfreeze()  # this test process's own collector goes back to Python's policy


def cycle() -> weakref.ref[Node]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_a_frozen_object_is_left_alone_by_collections_until_a_thaw_collects_it(heap: Heap) -> None:
    alive = cycle()
    heap.freeze()  # the cycle was still referenced from elsewhere when frozen; it is garbage now
    gc.collect()
    assert alive() is not None, "a full collection walked the frozen objects"
    assert heap.thaw() >= 2
    assert alive() is None
    assert heap.thaws == 1 and heap.reclaimed >= 2


def test_each_step_freezes_and_a_step_past_the_thaw_interval_thaws(heap: Heap) -> None:
    heap.step(heap.last_thaw + 1)
    assert (heap.freezes, heap.thaws) == (1, 0)
    heap.step(heap.last_thaw + 60)
    assert heap.thaws == 1


def test_sockets_closed_since_the_last_thaw_make_the_next_one_due_before_its_time(heap: Heap) -> None:
    soon = heap.last_thaw + 1
    for _ in range(THAW_CLOSED - 1):
        heap.opened_socket()
        heap.closed_socket()
    assert not heap.due(soon)
    heap.opened_socket()
    heap.closed_socket()
    assert heap.due(soon)  # what they left frozen is collected now, not in ten minutes
    heap.thaw()
    for _ in range(4 * THAW_CLOSED * 2):  # with 8,000 open, a quarter of them
        heap.opened_socket()
    for _ in range(THAW_CLOSED):
        heap.closed_socket()
    assert not heap.due(heap.last_thaw + 1)


def pauses_counted(generation: str) -> float:
    return REGISTRY.get_sample_value("murmuration_gc_pause_seconds_count", {"generation": generation}) or 0.0


def test_a_collection_is_noted_without_touching_the_metrics_and_published_later() -> None:
    # A collection can start inside prometheus-client while it holds its lock: the callback must not
    # take it again (with several workers that lock is not reentrant, and the worker would hang).
    pauses, before = Pauses(), pauses_counted("2")
    pauses("start", {"generation": 2})
    pauses("stop", {"generation": 2, "collected": 0})
    assert pauses_counted("2") == before and len(pauses.noted) == 1
    pauses.publish()
    assert pauses_counted("2") == before + 1 and not pauses.noted


def test_python_s_own_policy_is_kept_when_freezing_is_off() -> None:
    assert Heap(freeze_every=0, thaw_every=600).report() == {"policy": "python"}


@pytest.fixture(scope="module")
def server_env() -> dict[str, str]:
    return {"GC_FREEZE_SECONDS": "0.1", "GC_THAW_SECONDS": "1", "WS_PER_USER": "500", "RATE_LIMIT": "100000"}


def heap_of(server) -> dict[str, int]:
    body = httpx.get(f"{server.url}/health", timeout=10).json()
    assert body["tasks"]["heap"]["state"] == "running"
    assert body["heap"]["policy"] == "freeze"
    return dict(body["heap"])


def frozen(server) -> float:
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    return float(next(x for x in metrics.splitlines() if x.startswith("murmuration_gc_frozen_objects")).split()[-1])


def after_next_thaw(server) -> float:
    thaws = heap_of(server)["thaws"]
    wait_for(lambda: heap_of(server)["thaws"] > thaws + 1, 30, "two more thaws")
    return frozen(server)


def open_and_close(server, account, sockets: int) -> None:
    feeds = [Feed(server, account) for _ in range(sockets)]
    for feed in feeds:
        feed.subscribe("d", "documents")
    freezes = heap_of(server)["freezes"]
    wait_for(lambda: heap_of(server)["freezes"] > freezes + 1, 30, "the open sockets frozen")
    for feed in feeds:
        feed.close()


def test_the_sockets_a_worker_froze_are_collected_once_closed(server, signup) -> None:
    ann = signup("Ann")
    open_and_close(server, ann, 200)  # the first sockets fill the caches every later one reuses
    before = after_next_thaw(server)
    for _ in range(3):
        open_and_close(server, ann, 200)
    # A closed socket leaves a cycle of five objects (Sanic's Http and its bound methods): frozen for
    # good, 600 sockets would leave 3,000 (held by Sanic's timeout timer, 40 each for 30 s: 24,000).
    # What else moves between two thaws (driver sessions, caches) is a few hundred.
    grown: list[float] = []
    wait_for(
        lambda: grown.append(after_next_thaw(server) - before) or grown[-1] < 1200,
        15,  # well within the 30 s Sanic's timer held them
        "the closed sockets' objects collected",
        lambda: f"still {grown[-1]:.0f} more objects frozen than before 600 sockets opened and closed",
    )


def test_health_and_metrics_tell_the_policy_and_its_pauses(server) -> None:
    heap = heap_of(server)
    assert heap["freeze_seconds"] == 0.1 and heap["thaw_seconds"] == 1
    wait_for(lambda: heap_of(server)["sockets"] == 0, 15, "every socket of the tests above counted closed")
    wait_for(lambda: heap_of(server)["thaws"] >= 1, 30, "a thaw")
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    pauses = [x for x in metrics.splitlines() if x.startswith('murmuration_gc_pause_seconds_count{generation="2"}')]
    assert pauses and float(pauses[0].split()[-1]) >= 1, "a thaw is a full collection: its pause is timed"
