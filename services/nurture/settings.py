"""Nurture settings, from `NURTURE_*` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from services.nurture.rules import LONGEST
from services.privacy.policy import DEFAULT_POLICY_FILE
from services.runtime.send_once import lease_problem
from services.runtime.settings import ServiceSettings
from services.runtime.smtp import SmtpSettings

_RULES_FILE = Path(__file__).resolve().parents[2] / "config" / "nurture.yaml"


class NurtureSettings(ServiceSettings, SmtpSettings):
    model_config = SettingsConfigDict(
        env_prefix="NURTURE_", frozen=True, populate_by_name=True, extra="ignore"
    )

    web_port: int = Field(8084, ge=0, le=65535)
    fetch_max_wait_ms: int = Field(
        250,
        ge=0,
        description="How long the broker may hold nurture's fetches (NURTURE_FETCH_MAX_WAIT_MS; the "
        "hand-off path's services keep LEADPIPE_FETCH_MAX_WAIT_MS, 50). Nurture is off that path: a "
        "step is due in hours, and a lead turned sales-ready is exited a fraction of a second later. "
        "Fewer, fuller fetches cost nurture about 20% less CPU per event and Tansu about 10% less "
        "at 1,000 events/s (docs/performance.md, eleventh pass).",
    )
    batch_window_ms: float = Field(
        100.0,
        gt=0,
        description="How long nurture's agent waits for a batch to fill (NURTURE_BATCH_WINDOW_MS; the "
        "hand-off path's services keep LEADPIPE_BATCH_WINDOW_MS, 5). Off that path, fuller batches "
        "cost nurture less CPU per event at 1,000 events/s (193-203 against 224-226 µs in two pairs, "
        "docs/performance.md, thirteenth pass), CPU the services on the path then have.",
    )
    batch_window_max_ms: float = Field(
        100.0, gt=0, description="The same wait when nurture is busy (NURTURE_BATCH_WINDOW_MAX_MS)."
    )
    rules_file: Path = Field(_RULES_FILE, description="Sequences, cap and quiet hours (YAML).")
    privacy_file: Path = Field(
        DEFAULT_POLICY_FILE, description="Privacy periods (YAML): how long erased leads stay guarded."
    )
    tick_seconds: float = Field(5.0, gt=0, description="How often the scheduler looks for due steps.")
    retick_seconds: float = Field(30.0, gt=0, description="Re-announce a due step not handled by then.")
    # The e-mail adapter (services/nurture/mailer.py); the SMTP server is NURTURE_SMTP_* (SmtpSettings).
    mailer_enabled: bool = Field(True, description="Run the mailer inside the nurture worker.")
    delivery_lease_seconds: int = Field(
        10,
        ge=3,
        description="How long a mailer's claim on a command lasts without renewal (it is renewed every "
        "third of it while an attempt runs): after a crash mid-send the outbox waits at most this long "
        "before the next worker sends the command.",
    )
    mail_from: str = "Leadpipe <hello@leadpipe.example>"
    tracking_base_url: str = Field(
        "http://127.0.0.1:8080", description="Public base URL of the tracking redirects (capture)."
    )
    tracking_secret: SecretStr = Field(SecretStr("dev-tracking-secret-change-me"))
    consent_confirm_url: str = Field(
        "http://127.0.0.1:8080/v1/consent/confirm",
        description="Public URL of capture's double opt-in page, linked from the confirmation mail.",
    )
    consent_secret: SecretStr = Field(
        SecretStr("dev-consent-secret-change-me"),
        description="HMAC key of confirmation links; the same value as CAPTURE_CONSENT_SECRET.",
    )
    consent_token_ttl_seconds: int = Field(
        7 * 24 * 3600,
        ge=60,
        le=int(LONGEST.total_seconds()),
        description="How long a confirmation link works after its mail was due (at most ten years).",
    )
    sent_ttl_seconds: int = Field(60 * 24 * 3600, ge=60, description="How long a sent command id is kept.")
    stop_ttl_seconds: int = Field(400 * 24 * 3600, ge=60, description="How long a stop marker is kept.")
    redis_timeout: float = Field(2.0, gt=0)

    @model_validator(mode="after")
    def _lease_outlasts_a_renewal(self) -> NurtureSettings:
        problem = lease_problem("delivery_lease_seconds", self.delivery_lease_seconds, self.redis_timeout)
        if problem:
            raise ValueError(problem)
        return self
