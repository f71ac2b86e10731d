"""Configuration is read once and fails fast, naming the variable."""

from __future__ import annotations

import pytest

from service.config import ConfigError, Settings

KEYS = {"BRAINTREE_MERCHANT_ID": "m", "BRAINTREE_PUBLIC_KEY": "pub-key", "BRAINTREE_PRIVATE_KEY": "priv-key"}


def test_defaults_need_no_environment() -> None:
    settings = Settings.from_env({})
    assert settings.port == 8000 and settings.workers == 1
    assert settings.mongo_url.startswith("mongodb://") and settings.braintree is None
    # The contract's websocket limits: 10 s to authenticate, frames up to 1 MiB.
    assert settings.ws_auth_timeout == 10 and settings.ws_max_frame == 1024 * 1024


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"PORT": "eighty"}, "PORT"),
        ({"PORT": "70000"}, "PORT"),
        ({"WORKERS": "0"}, "WORKERS"),
        ({"MONGO_URL": "postgres://x"}, "MONGO_URL"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL"),
        ({"GC_FREEZE_SECONDS": "-1"}, "GC_FREEZE_SECONDS"),
        ({"GC_THAW_SECONDS": "0"}, "GC_THAW_SECONDS"),
        ({"GC_FREEZE_SECONDS": "1e-9"}, "GC_FREEZE_SECONDS"),
        ({"GC_FREEZE_SECONDS": "60", "GC_THAW_SECONDS": "30"}, "GC_THAW_SECONDS"),
        ({"BRAINTREE_MERCHANT_ID": "m"}, "BRAINTREE_PUBLIC_KEY"),
        ({**KEYS, "BRAINTREE_ENVIRONMENT": "http://127.0.0.1:notaport"}, "BRAINTREE_ENVIRONMENT"),
        ({**KEYS, "BRAINTREE_ENVIRONMENT": "https://api.braintreegateway.com"}, "BRAINTREE_ENVIRONMENT"),
    ],
)
def test_a_bad_value_is_refused_with_its_name(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        Settings.from_env(env)


def test_braintree_keys_never_show_in_a_repr() -> None:
    settings = Settings.from_env(
        {"BRAINTREE_MERCHANT_ID": "m", "BRAINTREE_PUBLIC_KEY": "pub-key", "BRAINTREE_PRIVATE_KEY": "priv-key"}
    )
    assert "priv-key" not in repr(settings) and "pub-key" not in repr(settings)


def test_the_service_refuses_to_start_with_a_broken_catalog_and_names_it(tmp_path) -> None:
    import os
    import subprocess
    import sys

    from .harness import ROOT

    broken = tmp_path / "catalog.json"
    broken.write_text("{not json")
    env = {**os.environ, "CATALOG_PATH": str(broken), "PORT": "1"}
    done = subprocess.run([sys.executable, "-m", "service"], cwd=ROOT, env=env, capture_output=True, timeout=60)
    assert done.returncode == 2
    assert f"configuration error: CATALOG_PATH={broken}" in done.stderr.decode()
    assert b"Traceback" not in done.stderr


def test_a_lease_too_short_for_a_gateway_call_and_its_margin_is_refused() -> None:
    with pytest.raises(ConfigError, match="PAYMENT_LEASE"):
        Settings.from_env({"BRAINTREE_TIMEOUT": "20", "PAYMENT_LEASE": "24"})
    assert Settings.from_env({"BRAINTREE_TIMEOUT": "20", "PAYMENT_LEASE": "25"}).payment_lease == 25


def test_drop_in_is_on_for_braintree_and_off_for_an_emulator_unless_told() -> None:
    assert Settings.from_env({}).braintree_dropin
    assert not Settings.from_env({"BRAINTREE_ENVIRONMENT": "http://127.0.0.1:8500"}).braintree_dropin
    assert Settings.from_env(
        {"BRAINTREE_ENVIRONMENT": "http://127.0.0.1:8500", "BRAINTREE_DROPIN": "on"}
    ).braintree_dropin
    with pytest.raises(ConfigError, match="BRAINTREE_DROPIN"):
        Settings.from_env({"BRAINTREE_DROPIN": "maybe"})


def test_by_default_every_earlier_version_of_a_document_is_kept_as_the_contract_says() -> None:
    assert Settings.from_env({}).revisions_kept == 0  # 0: no retention
    assert Settings.from_env({"REVISIONS_KEPT": "100"}).revisions_kept == 100


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://127.0.0.1:1025", ("127.0.0.1", 1025, "opportunistic", None)),
        ("smtp+starttls://mailer:p%40ss@smtp.example.com", ("smtp.example.com", 587, "starttls", "mailer")),
        ("smtps://smtp.example.com", ("smtp.example.com", 465, "tls", None)),
    ],
)
def test_smtp_url_names_host_port_security_and_user(url: str, expected: tuple[object, ...]) -> None:
    smtp = Settings.from_env({"SMTP_URL": url}).smtp
    assert smtp is not None and (smtp.host, smtp.port, smtp.security, smtp.username) == expected
    assert "p@ss" not in repr(smtp)  # the password never reaches a log


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"SMTP_URL": "http://user:hunter2@mail"}, "SMTP_URL"),
        ({"SMTP_URL": "smtp://user:hunter2@mail:notaport"}, "SMTP_URL"),
        ({"MAIL_FROM": "nobody"}, "MAIL_FROM"),
        ({"PUBLIC_URL": "ftp://example.com"}, "PUBLIC_URL"),
    ],
)
def test_bad_mail_settings_stop_the_start_naming_the_variable_not_the_password(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named) as caught:
        Settings.from_env(env)
    assert "hunter2" not in str(caught.value)
