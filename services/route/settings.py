"""Route settings, from `ROUTE_*` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from services.privacy.policy import DEFAULT_POLICY_FILE
from services.runtime.api_keys import keys_setting, split_keys
from services.runtime.send_once import lease_problem
from services.runtime.settings import ServiceSettings
from services.runtime.smtp import SmtpSettings

_RULES_FILE = Path(__file__).resolve().parents[2] / "config" / "routing.yaml"


class RouteSettings(ServiceSettings, SmtpSettings):
    model_config = SettingsConfigDict(
        env_prefix="ROUTE_",
        frozen=True,
        populate_by_name=True,
        extra="ignore",
        hide_input_in_errors=True,  # an error about api_keys must not print the keys
    )

    web_port: int = Field(8083, ge=0, le=65535)
    rules_file: Path = Field(_RULES_FILE, description="Teams, reps, assignment rules and SLA tiers (YAML).")
    privacy_file: Path = Field(
        DEFAULT_POLICY_FILE, description="Privacy periods (YAML): how long erased leads stay guarded."
    )
    redis_prefix: str = Field(
        "leadpipe:route:", description="Prefix of every Redis key; tests use a unique one each."
    )
    sla_check_interval: float = Field(1.0, gt=0, description="Seconds between checks for due SLA deadlines.")
    sla_claim_seconds: float = Field(
        30.0, gt=0, description="A claimed deadline comes due again after this if its worker died."
    )
    sla_reminder_keep_seconds: float = Field(
        60.0,
        gt=0,
        description="How long past its deadline a deadline's reminder is remembered: longer than the "
        "workers' clocks disagree, or a worker whose clock runs behind publishes it again (mailed once).",
    )
    redis_timeout: float = Field(2.0, gt=0, description="Seconds per Redis call.")
    api_keys: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        default=(),
        description="Comma-separated keys for the rep API (/reps), plain or sha256:<hex>; list the old and "
        "the new key while rotating. Only hashes are kept. None: the rep API answers 503.",
    )
    max_body_bytes: int = Field(4096, ge=256, le=1024 * 1024, description="Largest PUT /reps body accepted.")
    # SLA notices by e-mail (services/route/notifier.py); the SMTP server is ROUTE_SMTP_* (SmtpSettings).
    notify_enabled: bool = Field(
        True, description="E-mail the people an SLA breach names (the team lead, then the escalation list)."
    )
    notify_from: str = "Leadpipe SLA <sla@leadpipe.example>"
    notify_lead_url: str | None = Field(
        None,
        description="A link to the lead in the sales tool, `{lead_id}` replaced, for example "
        "https://crm.example.com/leads/{lead_id}. None: the notice gives the lead id alone.",
    )
    notify_lease_seconds: int = Field(
        10, ge=3, description="How long a claim on a notice lasts without renewal (renewed every third)."
    )
    notify_sent_ttl_seconds: int = Field(
        30 * 24 * 3600, ge=60, description="How long a sent notice's id is kept against a replay."
    )

    # Hand-offs POSTed to a team's crm_webhook_url (services/route/crm_delivery.py).
    crm_webhook_secret: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        default=(),
        description="Comma-separated secrets the CRM webhooks are signed with (a `v1` signature each): "
        "list the new and the old one while the receivers change over. Required once a team has a "
        "crm_webhook_url.",
    )
    crm_timeout_seconds: float = Field(10.0, gt=0, description="Seconds a CRM has to answer a POST.")
    crm_attempts: int = Field(10, ge=1, description="Posts tried before a hand-off is dead-lettered.")
    crm_backoff_seconds: float = Field(5.0, gt=0, description="Wait after the first failed post; doubled.")
    crm_backoff_max_seconds: float = Field(
        900.0, gt=0, description="Longest wait between posts, a Retry-After included (10 tries: ~40 min)."
    )
    crm_lease_seconds: float = Field(
        60.0, gt=0, description="A claimed delivery comes due again after this if its worker died."
    )
    crm_poll_seconds: float = Field(1.0, gt=0, description="Seconds between looks for due deliveries.")
    crm_concurrency: int = Field(20, ge=1, le=500, description="Posts in flight per team and worker.")
    crm_done_ttl_seconds: int = Field(
        30 * 24 * 3600, ge=60, description="How long a delivered hand-off's id is kept against a replay."
    )
    crm_keep_failed_seconds: int = Field(
        14 * 24 * 3600,
        ge=60,
        description="How long a dead-lettered delivery waits for `leadpipe requeue-crm`.",
    )

    @field_validator("api_keys", mode="before")
    @classmethod
    def _hash_keys(cls, value: object) -> object:
        return keys_setting(value)

    @field_validator("crm_webhook_secret", mode="before")
    @classmethod
    def _split_secrets(cls, value: object) -> object:
        return split_keys(value)

    @model_validator(mode="after")
    def _leases_outlast_their_work(self) -> RouteSettings:
        problem = lease_problem("notify_lease_seconds", self.notify_lease_seconds, self.redis_timeout)
        if problem:
            raise ValueError(problem)
        if self.crm_lease_seconds < 2 * self.crm_timeout_seconds:
            raise ValueError(
                f"crm_lease_seconds ({self.crm_lease_seconds:g}) must be at least twice "
                f"crm_timeout_seconds ({self.crm_timeout_seconds:g}): a post still waiting for its "
                "answer would be claimed and posted again by another worker"
            )
        return self

    @property
    def crm_secrets(self) -> tuple[str, ...]:
        return tuple(secret.get_secret_value() for secret in self.crm_webhook_secret)

    @property
    def api_key_hashes(self) -> frozenset[str]:
        return frozenset(key.get_secret_value() for key in self.api_keys)
