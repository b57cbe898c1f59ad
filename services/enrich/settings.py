"""Enrich settings, from `ENRICH_*` environment variables (business rules live in config/enrich.yaml)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from services.enrich.config import DEFAULT_CONFIG
from services.enrich.firmographics import DEFAULT_COMPANIES
from services.runtime.settings import ServiceSettings

CACHE_TIMEOUT = 0.5  # seconds the firmographics cache (Redis) may take to connect or answer


class EnrichSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="ENRICH_", frozen=True, populate_by_name=True, extra="ignore"
    )

    web_port: int = Field(8081, ge=0, le=65535)
    config_file: Path = Field(DEFAULT_CONFIG, description="Business rules (title rules, flagged domains).")
    companies_file: Path = Field(DEFAULT_COMPANIES, description="Company file of the local provider.")
    provider: Literal["local", "http"] = Field("local", description="Which firmographics provider to use.")
    provider_url: str = Field(
        "http://127.0.0.1:8090/companies/{domain}",
        description="HTTP provider URL template; {domain} is replaced by the company e-mail domain.",
    )
    provider_timeout: float = Field(0.5, gt=0, le=30, description="Seconds one HTTP lookup may take.")
    lookup_budget: float = Field(
        1.0, gt=0, le=30, description="Seconds an event may wait for firmographics (cache and provider)."
    )
    breaker_failures: int = Field(5, ge=1, description="Failures in a row that open the circuit.")
    breaker_reset_seconds: float = Field(30.0, gt=0, description="Seconds the circuit stays open.")
    cache_ttl_seconds: int = Field(7 * 24 * 3600, ge=1, description="How long a found company is cached.")
    negative_cache_ttl_seconds: int = Field(24 * 3600, ge=1, description="How long 'unknown' is cached.")
    retry_interval_seconds: float = Field(
        10.0, gt=0, description="How often lookups still owed for partial records are retried."
    )
    privacy_file: Path = Field(
        Path(__file__).resolve().parents[2] / "config" / "privacy.yaml",
        description="Retention periods (YAML); enrich requests erasure of leads inactive beyond them.",
    )

    @model_validator(mode="after")
    def _budget_fits_a_lookup(self) -> Self:
        """The budget cancels a lookup that outlives it: shorter than a cache read and one provider
        call, it would cut short provider calls still within their own timeout."""
        needed = self.provider_timeout + CACHE_TIMEOUT
        if self.lookup_budget < needed:
            raise ValueError(
                f"ENRICH_LOOKUP_BUDGET ({self.lookup_budget} s) is shorter than one lookup can take: "
                f"ENRICH_PROVIDER_TIMEOUT ({self.provider_timeout} s) plus the cache's {CACHE_TIMEOUT} s; "
                f"raise ENRICH_LOOKUP_BUDGET to at least {needed:g} or lower ENRICH_PROVIDER_TIMEOUT"
            )
        return self
