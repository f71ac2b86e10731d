"""Prometheus metrics. With several workers, prometheus-client's multiprocess mode merges them."""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

REQUESTS = Counter("murmuration_http_requests_total", "HTTP requests answered", ["method", "route", "status"])
LATENCY = Histogram(
    "murmuration_http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)


def observe(method: str, route: str, status: int, seconds: float) -> None:
    """Count an answered request and its latency; the labelled children are looked up once per
    (method, route, status), not on every request (`labels()` takes a lock and builds a key)."""
    counted = _answered.get((method, route, status))
    if counted is None:
        counted = _answered[(method, route, status)] = (
            REQUESTS.labels(method, route, str(status)),
            LATENCY.labels(method, route),
        )
    counted[0].inc()
    counted[1].observe(seconds)


# Bounded by the routes times their methods and statuses: the route is the pattern, never the path.
_answered: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

SOCKETS = Gauge("murmuration_websockets_open", "Open websocket connections", multiprocess_mode="livesum")
EVENTS = Counter("murmuration_events_fanned_out_total", "Events delivered to subscriptions", ["stream"])
STREAM_LAG = Gauge(
    "murmuration_change_stream_lag_seconds",
    "Seconds between a change's commit and its routing by this process",
    multiprocess_mode="max",
)
SLOW_CLIENTS = Counter("murmuration_slow_clients_closed_total", "Websockets closed with 4008 for not keeping up")
REPLAYS = Gauge("murmuration_replays_running", "Replays under way", multiprocess_mode="livesum")
REPLAY_READS = Counter(
    "murmuration_replay_changes_read_total", "Changes read from MongoDB by replays (filtered there per subscription)"
)
TASK_RESTARTS = Counter(
    "murmuration_task_restarts_total", "Background tasks restarted after an unexpected failure", ["task"]
)
MALFORMED = Counter(
    "murmuration_malformed_documents_total", "Stored documents left out because they cannot be shown", ["collection"]
)
SKIPPED_CHANGES = Counter(
    "murmuration_skipped_changes_total",
    "Changes (or parts of them) that could not be routed and were skipped",
    ["collection"],
)
PAYMENTS = Counter("murmuration_payment_outcomes_total", "Orders that reached a final status", ["status"])
PAYMENT_CORRECTIONS = Counter(
    "murmuration_payment_corrections_total", "Orders the reconciliation sweep corrected", ["from_status", "to_status"]
)
PAYMENT_EXTRA_CHARGES = Counter(
    "murmuration_payment_extra_charges_total", "Second charges for one order the sweep gave back", ["how"]
)
MAIL = Counter("murmuration_mail_total", "Outbox letters by what became of them", ["kind", "outcome"])
COMPACTIONS = Histogram(
    "murmuration_coedit_compaction_seconds",
    "Time to fold a live document's old updates into its snapshot (one transaction)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
COEDIT_RERUNS = Counter(
    "murmuration_coedit_write_reruns_total",
    "Live-editing writes run again after a write conflict: from the replica's base, or the log read whole",
    ["how"],
)
COMPACTED = Counter("murmuration_coedit_updates_compacted_total", "Live-editing updates folded into snapshots")
GC_PAUSES = Histogram(
    "murmuration_gc_pause_seconds",
    "Pauses of Python's cyclic garbage collector, by generation (1 and 2; a thaw is a generation 2)",
    ["generation"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
GC_FROZEN = Gauge(
    "murmuration_gc_frozen_objects", "Objects frozen again by the last thaw (heap.py)", multiprocess_mode="livesum"
)
GC_THAW_COLLECTED = Counter(
    "murmuration_gc_thaw_collected_total", "Unreachable objects the thaws of the frozen heap collected"
)

CONTENT_TYPE = CONTENT_TYPE_LATEST


def exposition() -> bytes:
    """The text format for all workers of this instance (one registry per process otherwise)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest()
