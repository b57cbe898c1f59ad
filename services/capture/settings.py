"""Capture settings, from `CAPTURE_*` environment variables."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from services.runtime.settings import ServiceSettings

_FORMS_FILE = Path(__file__).resolve().parents[2] / "config" / "forms.yaml"


def hash_api_key(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def _split(value: object) -> object:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


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
    ready_peers: dict[str, str] = Field(
        default_factory=dict,
        description="name -> readyz URL of other services; capture's /readyz waits for all of them.",
    )
    # Idempotency and protection (Redis).
    dedupe_window_seconds: int = Field(
        36 * 3600, ge=1, description="How long a sender id is remembered; Meta retries for up to 36 h."
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
    graph_attempts: int = Field(
        6, ge=1, description="Graph fetches per lead before giving up on the contact."
    )
    graph_backoff_seconds: float = Field(1.0, gt=0, description="First retry delay; doubles each attempt.")
    google_key: SecretStr | None = None
    linkedin_client_secret: SecretStr | None = None
    # Forms and consent.
    forms_file: Path = Field(_FORMS_FILE, description="Web form field mappings (YAML).")
    consent_secret: SecretStr = Field(
        SecretStr("dev-consent-secret-change-me"), description="HMAC key for consent confirmation tokens."
    )
    consent_token_ttl_seconds: int = Field(7 * 24 * 3600, ge=60)

    @field_validator("api_keys", "cors_origins", mode="before")
    @classmethod
    def _split_lists(cls, value: object) -> object:
        return _split(value)

    @property
    def api_key_hashes(self) -> frozenset[str]:
        hashes = set()
        for secret in self.api_keys:
            key = secret.get_secret_value()
            hashes.add(key if key.startswith("sha256:") else hash_api_key(key))
        return frozenset(hashes)
