"""Route settings, from `ROUTE_*` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.runtime.settings import ServiceSettings

_RULES_FILE = Path(__file__).resolve().parents[2] / "config" / "routing.yaml"


class RouteSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ROUTE_", frozen=True, populate_by_name=True, extra="ignore")

    web_port: int = Field(8083, ge=0, le=65535)
    rules_file: Path = Field(_RULES_FILE, description="Teams, reps, assignment rules and SLA tiers (YAML).")
    redis_prefix: str = Field(
        "leadpipe:route:", description="Prefix of every Redis key; tests use a unique one each."
    )
    sla_check_interval: float = Field(1.0, gt=0, description="Seconds between checks for due SLA deadlines.")
    sla_claim_seconds: float = Field(
        30.0, gt=0, description="A claimed deadline comes due again after this if its worker died."
    )
    redis_timeout: float = Field(2.0, gt=0, description="Seconds per Redis call.")
