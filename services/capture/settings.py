"""Capture settings, from `CAPTURE_*` environment variables."""

from __future__ import annotations

import hashlib
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from services.runtime.settings import ServiceSettings


def hash_api_key(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


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

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @property
    def api_key_hashes(self) -> frozenset[str]:
        hashes = set()
        for secret in self.api_keys:
            key = secret.get_secret_value()
            hashes.add(key if key.startswith("sha256:") else hash_api_key(key))
        return frozenset(hashes)
