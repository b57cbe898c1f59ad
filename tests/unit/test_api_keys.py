"""Shared API-key handling and ROUTE_API_KEYS: only hashes kept, rotation, clear config errors."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from pydantic_settings import BaseSettings

from services.capture.settings import CaptureSettings
from services.route.settings import RouteSettings
from services.runtime.api_keys import hash_api_key, hashed_keys, key_is_valid


def test_keys_from_the_environment_are_kept_only_as_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    upper = hash_api_key("gamma").upper().replace("SHA256:", "sha256:")
    monkeypatch.setenv("ROUTE_API_KEYS", f" alpha, beta ,,{upper},alpha")
    settings = RouteSettings()
    assert settings.api_key_hashes == {hash_api_key("alpha"), hash_api_key("beta"), hash_api_key("gamma")}
    assert len(settings.api_keys) == 3
    dumped = repr(settings.model_dump()) + str([k.get_secret_value() for k in settings.api_keys])
    assert "alpha" not in dumped and "beta" not in dumped


def test_no_keys_means_an_empty_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROUTE_API_KEYS", "")
    assert RouteSettings().api_key_hashes == frozenset()
    monkeypatch.delenv("ROUTE_API_KEYS")
    assert RouteSettings().api_key_hashes == frozenset()


def test_a_malformed_hash_fails_without_printing_the_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROUTE_API_KEYS", "plain-secret,sha256:replace-me")
    with pytest.raises(ValidationError) as caught:
        RouteSettings()
    assert "api_keys" in str(caught.value) and "64 hex digits" in str(caught.value)
    assert "plain-secret" not in str(caught.value)


def test_every_listed_key_is_valid_and_nothing_else() -> None:
    known = {key.get_secret_value() for key in hashed_keys(["old", hash_api_key("new")])}
    assert key_is_valid("old", known) and key_is_valid("new", known)
    assert not key_is_valid("", known)
    assert not key_is_valid(hash_api_key("old"), known)  # the hash itself is not a key
    assert not key_is_valid("old", set())


KEY_SETTINGS = [
    (CaptureSettings, "CAPTURE_API_KEYS", "api_key_hashes"),
    (CaptureSettings, "CAPTURE_ADMIN_KEYS", "admin_key_hashes"),
    (RouteSettings, "ROUTE_API_KEYS", "api_key_hashes"),
]


@pytest.mark.parametrize(("settings", "variable", "hashes"), KEY_SETTINGS)
def test_every_keys_setting_refuses_a_placeholder_hash_at_start_up(
    monkeypatch: pytest.MonkeyPatch, settings: type[BaseSettings], variable: str, hashes: str
) -> None:
    """Capture kept `sha256:replace-with-the-sha256-of-your-key` (the Kubernetes Secret's placeholder)
    as given: it started, and answered every sender 403."""
    monkeypatch.setenv(variable, "sha256:replace-with-the-sha256-of-your-key")
    with pytest.raises(ValidationError) as caught:
        settings()
    assert "64 hex digits" in str(caught.value)


@pytest.mark.parametrize(("settings", "variable", "hashes"), KEY_SETTINGS)
def test_every_keys_setting_takes_a_hash_in_upper_case(
    monkeypatch: pytest.MonkeyPatch, settings: type[BaseSettings], variable: str, hashes: str
) -> None:
    """Capture kept an upper-case digest as given, which no presented key's hash ever equals."""
    monkeypatch.setenv(variable, "sha256:" + hash_api_key("alpha").removeprefix("sha256:").upper())
    assert key_is_valid("alpha", getattr(settings(), hashes))
