"""Rate limits: per user once the token is known, per address before; login throttles; session caps."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from service.ratelimit import RateLimiter

from .harness import Account


@pytest.fixture(scope="module")
def server_env() -> dict[str, str]:
    # PROXIES_COUNT=1: a test picks the caller's address with X-Forwarded-For, as nginx would set it.
    return {"RATE_LIMIT": "60", "RATE_BURST": "5", "ANON_RATE_LIMIT": "60", "MAX_SESSIONS": "3", "PROXIES_COUNT": "1",
            "REGISTER_LIMIT": "10"}  # fmt: skip


@pytest.fixture
def signup(server) -> Iterator[Callable[..., Account]]:
    """Accounts left unverified: verifying is one more request from the same address, and this module's
    limits are tight on purpose (nothing here shares by email)."""
    made: list[Account] = []

    def make(name: str = "Ann", password: str = "correct horse") -> Account:
        made.append(Account.register(server.url, name, password, verified=False))
        return made[-1]

    yield make
    for account in made:
        account.close()


def at(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


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


def test_the_buckets_are_bounded_and_a_debt_is_not_forgotten_to_make_room() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=60, burst=3, clock=clock)
    limiter.max_keys = 2
    limiter.spend("debtor", 6)  # three tokens in debt: six seconds to be full again
    clock.now = 4.0
    limiter.spend("a", 1)
    clock.now = 5.0
    limiter.spend("b", 1)  # no room: "a" is full again and goes, the debtor (2 tokens) stays
    assert set(limiter.buckets) == {"debtor", "b"}
    assert [limiter.hit("debtor") for _ in range(2)] == [0.0, 0.0]
    assert limiter.hit("debtor") == pytest.approx(1.0)


def test_a_token_over_its_limit_gets_429_with_retry_after_and_others_do_not(signup) -> None:
    ann, bob = signup("Ann"), signup("Bob")
    answers = [ann.get("/contacts") for _ in range(8)]
    limited = [a for a in answers if a.status_code == 429]
    assert limited, [a.status_code for a in answers]
    assert limited[0].json()["error"]["code"] == "rate_limited"
    assert int(limited[0].headers["Retry-After"]) >= 1
    assert bob.get("/contacts").status_code == 200


def test_anonymous_callers_are_limited_by_address(anon: httpx.Client) -> None:
    answers = [anon.post("/auth/login", json={"email": "x@y.z", "password": "p"}, headers=at("10.0.0.9"))
               for _ in range(20)]  # fmt: skip
    assert any(a.status_code == 429 for a in answers)


def test_health_and_metrics_are_never_rate_limited(anon: httpx.Client) -> None:
    assert all(anon.get("/health").status_code == 200 for _ in range(30))


def test_made_up_tokens_share_their_addresss_bucket(anon: httpx.Client) -> None:
    codes = [anon.get("/contacts", headers={"Authorization": f"Bearer mm_{i}", **at("10.1.0.1")}).status_code
             for i in range(30)]  # fmt: skip
    assert codes[:10] == [401] * 10 and 429 in codes  # a burst of 10 per address, whatever the token
    assert anon.get("/contacts", headers={"Authorization": "Bearer mm_x", **at("10.1.0.2")}).status_code == 401


def test_limits_are_per_user_whatever_the_number_of_tokens(anon: httpx.Client, signup) -> None:
    ann = signup("Ann")
    login = {"email": ann.email, "password": ann.password}
    tokens = [anon.post("/auth/login", json=login, headers=at("10.2.0.1")).json()["token"] for _ in range(3)]
    as_ann = [{"Authorization": f"Bearer {tokens[i % 3]}", **at(f"10.2.1.{i}")} for i in range(12)]
    codes = [anon.get("/contacts", headers=headers).status_code for headers in as_ann]
    assert 429 in codes, codes  # three tokens do not get three buckets (5 each would allow all 12)


def test_a_user_keeps_at_most_max_sessions_the_oldest_end(anon: httpx.Client, signup) -> None:
    ann = signup("Ann")
    logins = [anon.post("/auth/login", json={"email": ann.email, "password": ann.password},
                        headers=at("10.3.0.1")).json()["token"] for _ in range(4)]  # fmt: skip
    me = [anon.get("/auth/me", headers={"Authorization": f"Bearer {t}", **at(f"10.3.1.{i}")}).status_code
          for i, t in enumerate([ann.token, *logins])]  # fmt: skip
    assert me == [401, 401, 200, 200, 200]  # MAX_SESSIONS=3: the sign-up's and the first login's ended


def test_a_session_ended_by_the_cap_closes_its_sockets(server, anon: httpx.Client, signup) -> None:
    from .feed import Feed

    ann = signup("Ann")
    with Feed(server, ann) as feed:  # on the sign-up's session, the oldest
        for _ in range(3):
            anon.post("/auth/login", json={"email": ann.email, "password": ann.password}, headers=at("10.3.2.1"))
        assert feed.closed(10)[0] == 4001


def test_concurrent_wrong_passwords_cannot_outrun_the_login_limit(anon: httpx.Client, signup) -> None:
    ann = signup("Ann")

    def guess(_: int) -> int:
        wrong = {"email": ann.email, "password": "wrong guess"}
        return anon.post("/auth/login", json=wrong, headers=at("10.4.0.1")).status_code

    with ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(guess, range(40)))
    assert codes.count(401) <= 5 and codes.count(429) >= 35  # at most LOGIN_MAX_FAILURES checked
    right = {"email": ann.email, "password": ann.password}
    assert anon.post("/auth/login", json=right, headers=at("10.4.0.1")).status_code == 429
    # The victim, elsewhere, is not locked out by someone guessing from another address.
    assert anon.post("/auth/login", json=right, headers=at("10.4.0.2")).status_code == 200


def test_a_window_that_ended_counts_nothing_even_before_mongodbs_ttl_reaper_runs(anon, signup, db) -> None:
    ann = signup("Ann")
    ended = datetime.now(UTC) - timedelta(seconds=1)
    db.throttles.insert_many([{"_id": f"login:email:{ann.email}:10.5.0.1", "failures": 99, "expires_at": ended},
                              {"_id": f"login:email:{ann.email}", "failures": 999, "expires_at": ended}])  # fmt: skip
    right = {"email": ann.email, "password": ann.password}
    assert anon.post("/auth/login", json=right, headers=at("10.5.0.1")).status_code == 200


def test_one_address_makes_at_most_register_limit_accounts_an_hour(anon: httpx.Client) -> None:
    def register(address: str, i: int) -> int:
        account = {"email": f"sybil{i}-{address}@example.com", "password": "long enough", "name": "S"}
        return anon.post("/auth/register", json=account, headers=at(address)).status_code

    codes = [register("10.7.0.1", i) for i in range(12)]
    assert codes[:10] == [201] * 10 and codes[10:] == [429, 429]  # each account would bring its own budget
    assert register("10.7.0.2", 99) == 201


def test_guessing_from_many_addresses_cannot_lock_the_owner_out_of_a_familiar_one(anon: httpx.Client, signup) -> None:
    ann = signup("Ann")
    right = {"email": ann.email, "password": ann.password}
    assert anon.post("/auth/login", json=right, headers=at("10.8.0.1")).status_code == 200  # her usual place
    wrong = {"email": ann.email, "password": "a guess"}
    for attacker in range(11):  # 55 guesses from 11 addresses: past the whole email's window of 50
        for _ in range(5):
            anon.post("/auth/login", json=wrong, headers=at(f"10.8.1.{attacker}"))
    assert anon.post("/auth/login", json=right, headers=at("10.8.2.1")).status_code == 429  # a new place: locked
    assert anon.post("/auth/login", json=right, headers=at("10.8.0.1")).status_code == 200  # her usual one: not
