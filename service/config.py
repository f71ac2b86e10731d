"""Configuration: read once from the environment into one typed, frozen object.

A bad value stops the service at start with a message naming the variable, instead of failing
later on the first request that needs it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parseaddr
from pathlib import Path
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parent.parent


class ConfigError(ValueError):
    """An environment variable has a value the service cannot use."""


class _Env:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ

    def text(self, name: str, default: str) -> str:
        value: str = self.environ.get(name, "").strip()
        return value or default

    def optional(self, name: str) -> str | None:
        value: str = self.environ.get(name, "").strip()
        return value or None

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        return int(self._bounded(name, default, low, high, int, "a whole number"))

    def number(self, name: str, default: float, low: float, high: float) -> float:
        return self._bounded(name, default, low, high, float, "a number")

    def _bounded(
        self, name: str, default: float, low: float, high: float, kind: Callable[[str], float], what: str
    ) -> float:
        raw = self.environ.get(name, "").strip()
        if not raw:
            return default
        try:
            value = kind(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r} is not {what}") from None
        if not low <= value <= high:
            raise ConfigError(f"{name}={value} is out of range {low}..{high}")
        return value

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.text(name, default).lower()
        if value not in choices:
            raise ConfigError(f"{name}={value!r} must be one of {', '.join(choices)}")
        return value


@dataclass(frozen=True, slots=True)
class Braintree:
    environment: str
    merchant_id: str
    public_key: str
    private_key: str

    def __repr__(self) -> str:  # keys never reach a log, even through a debug print of the settings
        return f"Braintree(environment={self.environment!r}, merchant_id={self.merchant_id!r}, keys=***)"


@dataclass(frozen=True, slots=True)
class Smtp:
    """Where mail goes: `SMTP_URL` = smtp://[user:password@]host[:port] (STARTTLS when the server offers
    it), smtp+starttls:// (STARTTLS required) or smtps:// (TLS from the first byte)."""

    host: str
    port: int
    security: str  # "opportunistic" | "starttls" | "tls"
    username: str | None
    password: str | None

    def __repr__(self) -> str:  # the password never reaches a log
        user = f"{self.username}:***@" if self.username else ""
        return f"Smtp({self.security} {user}{self.host}:{self.port})"


@dataclass(frozen=True, slots=True)
class Coedit:
    """Live co-editing (docs/protocol.md, the `doc` stream)."""

    save_after: float  # seconds of quiet after which typing makes a save point (version + 1)
    keep: float  # seconds of updates compaction keeps unfolded: the window a REST base may be in
    compact_after: int  # updates past the snapshot that make a document due a compaction
    update_bytes: int  # one update
    rate: int  # live updates and awareness updates per second per connection (bursts of twice that)
    documents: int  # documents held live in memory per process
    body_rate: int  # bytes of body a document's writes may put in the oplog per second


@dataclass(frozen=True, slots=True)
class Settings:
    mongo_url: str
    mongo_db: str
    host: str
    port: int
    workers: int
    instance: str
    log_level: str
    proxies_count: int
    token_ttl_days: int
    max_sessions: int
    rate_limit: int
    rate_burst: int
    anon_rate_limit: int
    write_budget: int
    register_limit: int
    revisions_kept: int
    login_max_failures: int
    login_window: int
    ws_auth_timeout: float
    ws_send_queue: int
    ws_send_bytes: int
    ws_per_user: int
    ws_max_frame: int
    ws_frame_rate: int
    presence_ttl: int
    braintree: Braintree | None
    braintree_timeout: float
    payment_lease: float
    braintree_threads: int
    braintree_dropin: bool
    payment_workers: int
    payment_poll: float
    payment_settle_delay: float
    payment_uncertain_for: float
    payment_sweep: float
    payment_sweep_days: int
    catalog_path: Path
    smtp: Smtp | None
    smtp_timeout: float
    mail_from: str
    mail_backoff: float
    mail_per_hour: int
    public_url: str
    verify_ttl_hours: int
    reset_ttl_minutes: int
    coedit: Coedit
    gc_freeze: float  # seconds between freezes of the heap's survivors (0: Python's own policy)
    gc_thaw: float  # seconds between collections of the frozen heap

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = _Env(os.environ if environ is None else environ)
        port = env.integer("PORT", 8000, 1, 65535)
        mongo_url = env.text("MONGO_URL", "mongodb://127.0.0.1:27017/?replicaSet=rs0")
        if not mongo_url.startswith(("mongodb://", "mongodb+srv://")):
            raise ConfigError("MONGO_URL must start with mongodb:// or mongodb+srv://")
        return cls(
            mongo_url=mongo_url,
            mongo_db=env.text("MONGO_DB", "murmuration"),
            host=env.text("HOST", "127.0.0.1"),
            port=port,
            workers=env.integer("WORKERS", 1, 1, 64),
            instance=env.text("INSTANCE_NAME", f"{socket.gethostname()}:{port}"),
            log_level=env.choice("LOG_LEVEL", "info", ("debug", "info", "warning", "error")),
            proxies_count=env.integer("PROXIES_COUNT", 0, 0, 10),
            token_ttl_days=env.integer("TOKEN_TTL_DAYS", 30, 1, 3650),
            max_sessions=env.integer("MAX_SESSIONS", 20, 1, 10_000),
            rate_limit=env.integer("RATE_LIMIT", 6000, 1, 10_000_000),
            rate_burst=env.integer("RATE_BURST", 600, 1, 10_000_000),
            anon_rate_limit=env.integer("ANON_RATE_LIMIT", 600, 1, 10_000_000),
            write_budget=env.integer("WRITE_BUDGET", 32 << 20, 64 << 10, 1 << 40),
            register_limit=env.integer("REGISTER_LIMIT", 20, 1, 1_000_000),
            # 0: every earlier version, as the contract says; a retention is the operator's choice.
            revisions_kept=env.integer("REVISIONS_KEPT", 0, 0, 1_000_000),
            login_max_failures=env.integer("LOGIN_MAX_FAILURES", 5, 1, 1000),
            login_window=env.integer("LOGIN_WINDOW", 300, 1, 86400),
            ws_auth_timeout=env.number("WS_AUTH_TIMEOUT", 10.0, 0.1, 600.0),
            ws_send_queue=env.integer("WS_SEND_QUEUE", 1000, 1, 1_000_000),
            ws_send_bytes=env.integer("WS_SEND_BYTES", 4 << 20, 64 << 10, 1 << 30),
            ws_per_user=env.integer("WS_PER_USER", 20, 1, 10_000),
            ws_max_frame=env.integer("WS_MAX_FRAME", 1 << 20, 1024, 64 << 20),
            ws_frame_rate=env.integer("WS_FRAME_RATE", 50, 1, 100_000),
            presence_ttl=env.integer("PRESENCE_TTL", 15, 2, 3600),
            braintree=_braintree(env),
            braintree_timeout=(timeout := env.number("BRAINTREE_TIMEOUT", 20.0, 0.5, 300.0)),
            payment_lease=_lease(env, timeout),
            braintree_threads=env.integer("BRAINTREE_THREADS", 8, 1, 256),
            braintree_dropin=_dropin(env),
            payment_workers=env.integer("PAYMENT_WORKERS", 2, 0, 64),
            payment_poll=env.number("PAYMENT_POLL", 1.0, 0.05, 60.0),
            payment_settle_delay=env.number("PAYMENT_SETTLE_DELAY", 60.0, 0.0, 86400.0),
            payment_uncertain_for=env.number("PAYMENT_UNCERTAIN_FOR", 3600.0, 1.0, 30 * 86400.0),
            payment_sweep=env.number("PAYMENT_SWEEP", 300.0, 0.1, 86400.0),
            payment_sweep_days=env.integer("PAYMENT_SWEEP_DAYS", 7, 1, 365),
            catalog_path=Path(env.text("CATALOG_PATH", str(ROOT / "service" / "payments" / "catalog.json"))),
            smtp=_smtp(env.optional("SMTP_URL")),
            smtp_timeout=env.number("SMTP_TIMEOUT", 30.0, 0.5, 600.0),
            mail_from=_mail_from(env.text("MAIL_FROM", "Murmuration <murmuration@localhost>")),
            mail_backoff=env.number("MAIL_BACKOFF", 30.0, 0.05, 3600.0),
            mail_per_hour=env.integer("MAIL_PER_HOUR", 10, 1, 10_000),
            public_url=_public_url(env.text("PUBLIC_URL", f"http://127.0.0.1:{port}")),
            verify_ttl_hours=env.integer("VERIFY_TTL_HOURS", 48, 1, 24 * 365),
            reset_ttl_minutes=env.integer("RESET_TTL_MINUTES", 60, 1, 24 * 60),
            coedit=Coedit(
                save_after=env.number("COEDIT_SAVE_AFTER", 10.0, 0.1, 86400.0),
                keep=env.number("COEDIT_KEEP", 600.0, 1.0, 30 * 86400.0),
                compact_after=env.integer("COEDIT_COMPACT_AFTER", 500, 10, 1_000_000),
                update_bytes=env.integer("COEDIT_UPDATE_BYTES", 256 << 10, 1024, 64 << 20),
                rate=env.integer("COEDIT_RATE", 30, 1, 10_000),
                documents=env.integer("COEDIT_DOCUMENTS", 1000, 1, 1_000_000),
                body_rate=env.integer("COEDIT_BODY_RATE", 4 << 20, 64 << 10, 1 << 40),
            ),
            gc_freeze=(freeze := _gc_freeze(env)),
            gc_thaw=_gc_thaw(env, freeze),
        )


def _gc_freeze(env: _Env) -> float:
    freeze = env.number("GC_FREEZE_SECONDS", 1.0, 0.0, 3600.0)
    if 0 < freeze < 0.1:  # an idle worker would do nothing but freeze
        raise ConfigError("GC_FREEZE_SECONDS must be 0 (Python's own policy) or at least 0.1")
    return freeze


def _gc_thaw(env: _Env, freeze: float) -> float:
    thaw = env.number("GC_THAW_SECONDS", 600.0, 1.0, 7 * 86400.0)
    if thaw < freeze:  # thaws happen on a freeze's tick: a shorter interval would not be kept
        raise ConfigError(f"GC_THAW_SECONDS must be at least GC_FREEZE_SECONDS ({freeze:g})")
    return thaw


# Time a worker needs after a gateway call to record its outcome, on top of the call's deadline.
LEASE_MARGIN = 5.0


def _lease(env: _Env, timeout: float) -> float:
    lease = env.number("PAYMENT_LEASE", max(60.0, 3 * timeout), 1.0, 3600.0)
    if lease < timeout + LEASE_MARGIN:
        # A lease that lapses while a call may still be in flight would let a second worker act on
        # the order (the lease is also renewed during calls; this keeps one missed renewal harmless).
        raise ConfigError(
            f"PAYMENT_LEASE={lease} must be at least BRAINTREE_TIMEOUT={timeout} + {LEASE_MARGIN:g} seconds"
        )
    return lease


def _dropin(env: _Env) -> bool:
    """Braintree's Drop-in on the dashboard: on for sandbox and production (it loads from Braintree's
    CDN), off for a local emulator (test nonces instead); BRAINTREE_DROPIN=on|off overrides."""
    default = "off" if env.text("BRAINTREE_ENVIRONMENT", "sandbox").startswith("http") else "on"
    return env.choice("BRAINTREE_DROPIN", default, ("on", "off")) == "on"


def _emulator(url: str) -> bool:
    """An http://HOST:PORT URL, with a port that is one."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return False
    return parts.scheme == "http" and bool(parts.hostname) and port is not None


def _braintree(env: _Env) -> Braintree | None:
    names = ("BRAINTREE_MERCHANT_ID", "BRAINTREE_PUBLIC_KEY", "BRAINTREE_PRIVATE_KEY")
    values = [env.optional(name) for name in names]
    if not any(values):
        return None
    missing = [name for name, value in zip(names, values, strict=True) if not value]
    if missing:
        raise ConfigError(f"Braintree is half configured: set {', '.join(missing)} too, or none of them")
    merchant_id, public_key, private_key = (value or "" for value in values)
    environment = env.text("BRAINTREE_ENVIRONMENT", "sandbox")
    if environment not in ("sandbox", "production", "development", "qa") and not _emulator(environment):
        # https:// is refused too: a URL is spoken as plain HTTP (an emulator), keys included.
        raise ConfigError(
            "BRAINTREE_ENVIRONMENT must be sandbox, production, or http://HOST:PORT of a local gateway emulator"
        )
    return Braintree(environment, merchant_id, public_key, private_key)


SMTP_SCHEMES = {"smtp": ("opportunistic", 25), "smtp+starttls": ("starttls", 587), "smtps": ("tls", 465)}


def _smtp(url: str | None) -> Smtp | None:
    if url is None:
        return None
    parts = urlsplit(url)
    scheme = SMTP_SCHEMES.get(parts.scheme.lower())
    try:
        port = parts.port
    except ValueError:
        port = -1
    if scheme is None or not parts.hostname or port == -1:
        # The URL is not echoed: it may hold a password.
        raise ConfigError("SMTP_URL must be smtp://, smtp+starttls:// or smtps:// [user:password@]host[:port]")
    security, default_port = scheme
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return Smtp(parts.hostname, port or default_port, security, username, password)


def _mail_from(value: str) -> str:
    address = parseaddr(value)[1]
    if "@" not in address or any(c in value for c in "\r\n"):
        raise ConfigError(f"MAIL_FROM={value!r} is not an address (Name <user@example.com>, or user@example.com)")
    return value


def _public_url(value: str) -> str:
    """Where people reach the service: the links in mail start with it."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(f"PUBLIC_URL={value!r} must be http(s)://host[:port][/path], where people open the dashboard")
    return value.rstrip("/")
