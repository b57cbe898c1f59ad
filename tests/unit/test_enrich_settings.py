"""Enrich's settings refuse combinations that cannot work."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.enrich.settings import CACHE_TIMEOUT, EnrichSettings


def test_a_lookup_budget_shorter_than_one_provider_call_is_refused_naming_both_variables() -> None:
    """The budget cancels a lookup that outlives it: shorter than a cache read plus one provider
    call, it would cut provider calls short that were going to answer."""
    with pytest.raises(ValidationError) as error:
        EnrichSettings(provider_timeout=0.5, lookup_budget=0.3)
    message = str(error.value)
    assert "ENRICH_LOOKUP_BUDGET" in message and "ENRICH_PROVIDER_TIMEOUT" in message
    assert "0.3" in message and "0.5" in message


def test_a_budget_that_covers_the_cache_and_the_provider_is_accepted() -> None:
    settings = EnrichSettings(provider_timeout=2.0, lookup_budget=2.0 + CACHE_TIMEOUT)
    assert settings.lookup_budget == 2.0 + CACHE_TIMEOUT
    EnrichSettings()  # the defaults are consistent


def test_the_rule_reads_the_environment_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENRICH_PROVIDER_TIMEOUT", "3")
    with pytest.raises(ValidationError, match="ENRICH_LOOKUP_BUDGET"):
        EnrichSettings()
