"""Rate limits: per token, per address before login, answered 429 with Retry-After."""

from __future__ import annotations

import httpx
import pytest

from service.ratelimit import RateLimiter


@pytest.fixture(scope="module")
def server_env() -> dict[str, str]:
    return {"RATE_LIMIT": "60", "RATE_BURST": "5", "ANON_RATE_LIMIT": "60"}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_refills_at_its_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=60, burst=3, clock=clock)
    assert [limiter.hit("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.hit("k") == pytest.approx(1.0)
    assert limiter.hit("other") == 0.0
    clock.now = 1.0
    assert limiter.hit("k") == 0.0


def test_a_token_over_its_limit_gets_429_with_retry_after_and_others_do_not(signup) -> None:
    ann, bob = signup("Ann"), signup("Bob")
    answers = [ann.get("/contacts") for _ in range(8)]
    limited = [a for a in answers if a.status_code == 429]
    assert limited, [a.status_code for a in answers]
    assert limited[0].json()["error"]["code"] == "rate_limited"
    assert int(limited[0].headers["Retry-After"]) >= 1
    assert bob.get("/contacts").status_code == 200


def test_anonymous_callers_are_limited_by_address(anon: httpx.Client) -> None:
    answers = [anon.post("/auth/login", json={"email": "x@y.z", "password": "p"}) for _ in range(20)]
    assert any(a.status_code == 429 for a in answers)


def test_health_and_metrics_are_never_rate_limited(anon: httpx.Client) -> None:
    assert all(anon.get("/health").status_code == 200 for _ in range(30))
