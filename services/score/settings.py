"""Score settings, from `SCORE_*` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.privacy.policy import DEFAULT_POLICY_FILE
from services.runtime.settings import ServiceSettings
from services.score.rules import DEFAULT_RULES_FILE


class ScoreSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SCORE_", frozen=True, populate_by_name=True, extra="ignore")

    web_port: int = Field(8082, ge=0, le=65535)
    rules_file: Path = Field(DEFAULT_RULES_FILE, description="The scoring rules YAML.")
    decay_check_interval: float = Field(
        1.0, gt=0, description="Seconds between checks for cooled-down leads."
    )
    rules_reload_interval: float = Field(5.0, gt=0, description="Seconds between checks of the rules file.")
    privacy_file: Path = Field(
        DEFAULT_POLICY_FILE, description="Privacy periods (YAML): how long erased leads stay guarded."
    )
