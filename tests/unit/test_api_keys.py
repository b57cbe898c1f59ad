"""Shared API-key handling and ROUTE_API_KEYS: only hashes kept, rotation, clear config errors."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

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
