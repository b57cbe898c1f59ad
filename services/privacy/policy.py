"""The privacy policy (`config/privacy.yaml`): retention periods, validated at start-up."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.runtime.config_file import load_yaml_model

DEFAULT_POLICY_FILE = Path(__file__).resolve().parents[2] / "config" / "privacy.yaml"


class PrivacyConfigError(ValueError):
    pass


class PrivacyPolicy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    inactive_lead_retention: timedelta = Field(
        timedelta(days=730), description="A lead without any interaction this long is erased."
    )
    consent_proof_retention: timedelta = Field(
        timedelta(days=3 * 365), description="Consent proof is kept this long after its last change."
    )
    erasure_log_retention: timedelta = Field(
        timedelta(days=3 * 365),
        description="How long the record that an erasure was requested and done (no personal data) is kept.",
    )
    retention_sweep_interval: timedelta = Field(
        timedelta(hours=1), description="How often enrich looks for inactive leads."
    )
    erasure_guard: timedelta = Field(
        timedelta(days=7),
        description="How long services drop records about an erased lead that happened before its erasure.",
    )
    activity_resolution: timedelta = Field(
        timedelta(hours=1), description="Last-activity times are stored no more often than this."
    )

    @field_validator("*")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be longer than zero")
        return value


def load_policy(path: Path = DEFAULT_POLICY_FILE) -> PrivacyPolicy:
    """The validated policy; the error names the file, the key and the problem."""
    return load_yaml_model(path, PrivacyPolicy, PrivacyConfigError)
