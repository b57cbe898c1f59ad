"""Capture settings, from `CAPTURE_*` environment variables."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from services.capture.fetch_queue import DROPPED_TTL_SECONDS
from services.runtime.api_keys import keys_setting, split_keys
from services.runtime.settings import ServiceSettings

_FORMS_FILE = Path(__file__).resolve().parents[2] / "config" / "forms.yaml"


class CaptureSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="CAPTURE_", frozen=True, populate_by_name=True, extra="ignore"
    )

    web_port: int = Field(8080, ge=0, le=65535)
    api_keys: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        default=(),
        description="Comma-separated API keys, plain or pre-hashed as sha256:<hex>. Only hashes are kept.",
    )
    publish_timeout: float = Field(5.0, gt=0, description="Seconds to wait for the broker's acknowledgement.")
    retry_after_seconds: int = Field(5, ge=1)
    max_body_bytes: int = Field(1024 * 1024, ge=1024)
    max_record_bytes: int = Field(
        512 * 1024,
        ge=1024,
        description="Largest record capture publishes (the producer's max_request_size). A record over it "
        "is answered 413: no retry could store it. Half the services' own limit (faust's 1,000,000 bytes), "
        "as enrich adds the profile to each event and keeps an anonymous lead's history beside it: an "
        "event taken at 1 MiB reached no one, dead-lettered downstream after its 202.",
    )
    max_clock_ahead_seconds: int = Field(
        3600,
        ge=0,
        description="How far a sender's occurred_at may lie after capture received the event. Later is "
        "refused (422; an ad platform's time is replaced by the receive time): a future date would win "
        "enrich's newest-value-wins and move score's clocks ahead until that date. Past dates are taken.",
    )
    ready_peers: dict[str, str] = Field(
        default_factory=dict,
        description="name -> readyz URL of other services; capture's /readyz waits for all of them.",
    )
    # Idempotency and protection (Redis).
    dedupe_window_seconds: int = Field(
        36 * 3600, ge=1, description="How long a sender id is remembered; Meta retries for up to 36 h."
    )
    form_resubmit_seconds: int = Field(
        60,
        ge=1,
        description="How long an identical form submission is the same one (a double click, a reload that "
        "posts again). Short, unlike the event-id window: a form carries no event id, so the same request "
        "sent again later (the next day's demo request) is a new interaction, not a retry.",
    )
    redis_timeout: float = Field(0.5, gt=0, description="Seconds per Redis call before failing open.")
    rate_limit_per_minute: int = Field(600, ge=1, description="Requests per API key (or client) a minute.")
    max_batch: int = Field(500, ge=1, le=500)
    max_json_depth: int = Field(12, ge=2, description="Deepest nesting accepted in a JSON body.")
    max_properties: int = Field(100, ge=1, description="Most keys accepted in an event's properties.")
    cors_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), description="Comma-separated origins allowed to call capture from a browser."
    )
    # Ad platforms.
    meta_app_secret: SecretStr | None = None
    meta_verify_token: SecretStr | None = None
    meta_access_token: SecretStr | None = None
    graph_url: str = Field("https://graph.facebook.com/v21.0", description="Meta Graph API base URL.")
    google_key: SecretStr | None = None
    linkedin_client_secret: SecretStr | None = None
    linkedin_access_token: SecretStr | None = Field(
        None,
        description="OAuth token with Lead Sync access (r_marketing_leadgen_automation). Without it a "
        "LinkedIn lead is published with its response URN only, its answers not fetched.",
    )
    linkedin_api_url: str = Field("https://api.linkedin.com/rest", description="LinkedIn REST API base URL.")
    linkedin_api_version: str = Field("202601", description="The LinkedIn-Version header (YYYYMM).")
    # Contact fetches of Meta and LinkedIn leads (services/capture/contact_fetch.py), queued in Redis.
    contact_fetch_attempts: int = Field(
        12, ge=1, description="Tries per lead before giving up on its contact (its lead id stays published)."
    )
    contact_fetch_backoff_seconds: float = Field(
        1.0, gt=0, description="First retry delay; doubles each attempt up to the maximum."
    )
    contact_fetch_backoff_max_seconds: float = Field(900.0, gt=0, description="Longest retry delay.")
    contact_fetch_lease_seconds: float = Field(
        60.0,
        gt=0,
        description="How long a claimed fetch is out of other captures' reach: a fetch whose capture died "
        "is retried after it. Longer than an HTTP call and a publish.",
    )
    contact_fetch_poll_seconds: float = Field(
        1.0, gt=0, description="How often the queue is read for retries that came due."
    )
    contact_fetch_dropped_ttl_seconds: int = Field(
        DROPPED_TTL_SECONDS,
        ge=60,
        description="How long a lead deleted on the platform (LinkedIn's DELETED) stays out of the fetch "
        "queue: a CREATED for it that comes later (LinkedIn delivered it again, or late) fetches nothing. "
        "Longer than a platform retries a webhook: LinkedIn does not say for how long, Meta for up to "
        "36 h, so a week by default. One small Redis key per deleted lead.",
    )
    # Forms and consent.
    forms_file: Path = Field(_FORMS_FILE, description="Web form field mappings (YAML).")
    consent_secret: SecretStr = Field(
        SecretStr("dev-consent-secret-change-me"),
        description="HMAC key of consent confirmation links; the same value as NURTURE_CONSENT_SECRET "
        "(nurture mails them, and says how long they work).",
    )
    # E-mail tracking links (services/capture/tracking.py); nurture's mailer signs them.
    tracking_secret: SecretStr = Field(
        SecretStr("dev-tracking-secret-change-me"),
        description="HMAC key of tracking links; the same value as NURTURE_TRACKING_SECRET.",
    )
    tracking_max_age_seconds: int = Field(
        180 * 24 * 3600,
        ge=60,
        description="Opens and clicks of older links are not counted (a click still redirects).",
    )

    # Privacy (services/capture/privacy_api.py): erasure, export, consent proof.
    admin_keys: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        default=(),
        description="Comma-separated admin keys for /v1/privacy/*, plain or sha256:<hex>; list the old and "
        "the new key while rotating. Only hashes are kept. An admin key is also a valid API key.",
    )
    privacy_salt: SecretStr = Field(
        SecretStr("dev-privacy-salt-change-me"),
        description="Secret salt of the consent proof's subject and address hashes. Changing it orphans "
        "existing proofs, so keep it as long as consent_proof_retention.",
    )
    privacy_file: Path = Field(
        Path(__file__).resolve().parents[2] / "config" / "privacy.yaml",
        description="Retention periods (YAML): consent proof and erasure log.",
    )
    privacy_services: Annotated[tuple[str, ...], NoDecode] = Field(
        default=("enrich", "score", "route", "nurture"),
        description="Comma-separated services that hold lead data: exports wait for their answers and "
        "an erasure is complete when each (and capture) reported it.",
    )
    export_timeout: float = Field(10.0, gt=0, le=120, description="Seconds an export waits for answers.")
    privacy_consumer: bool = Field(
        True,
        description="Consume privacy.requests: the consent proof ledger, erasure of capture's own data "
        "and the erasure log. Off only for tests that do not need it.",
    )

    @field_validator("cors_origins", "privacy_services", mode="before")
    @classmethod
    def _split_lists(cls, value: object) -> object:
        return split_keys(value)

    @field_validator("api_keys", "admin_keys", mode="before")
    @classmethod
    def _hash_keys(cls, value: object) -> object:
        """Hashed as they are read, as route's are: a placeholder `sha256:` value (the Kubernetes
        Secret's) or one in upper case was kept as given and matched no key, answering every sender
        403, where it now stops capture at start-up naming the setting."""
        return keys_setting(value)

    @staticmethod
    def _hashes(keys: tuple[SecretStr, ...]) -> frozenset[str]:
        return frozenset(key.get_secret_value() for key in keys)

    @property
    def max_clock_ahead(self) -> timedelta:
        return timedelta(seconds=self.max_clock_ahead_seconds)

    @property
    def api_key_hashes(self) -> frozenset[str]:
        """Keys accepted on /v1/: API keys and admin keys (an admin may do what a client may)."""
        return self._hashes(self.api_keys) | self.admin_key_hashes

    @property
    def admin_key_hashes(self) -> frozenset[str]:
        return self._hashes(self.admin_keys)
