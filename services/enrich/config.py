"""Enrich's business rules from `config/enrich.yaml`, validated at start-up; errors name file and key."""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas.profile import Seniority
from services.enrich.normalise import fold_name
from services.runtime.config_file import load_yaml_model

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "config" / "enrich.yaml"


class ConfigError(ValueError):
    """The configuration file cannot be used; the message names the file, the key and the problem."""


def _compile(patterns: list[str]) -> list[str]:
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None
    return patterns


class _Rules(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    patterns: list[str] = Field(min_length=1)

    _check = field_validator("patterns")(_compile)

    @cached_property
    def regex(self) -> re.Pattern[str]:
        return re.compile("|".join(f"(?:{p})" for p in self.patterns))


class SeniorityRule(_Rules):
    level: Seniority


class DepartmentRule(_Rules):
    department: str = Field(min_length=1, pattern=r"^[a-z_]+$")


class EnrichConfig(BaseModel):
    """Title rules, country aliases, flagged domains and state bounds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seniority: list[SeniorityRule] = Field(min_length=1)
    departments: list[DepartmentRule] = Field(default_factory=list)
    country_aliases: dict[str, str] = Field(default_factory=dict)
    default_phone_region: str | None = Field(None, pattern=r"^[A-Z]{2}$")
    competitor_domains: frozenset[str] = frozenset()
    customer_domains: frozenset[str] = frozenset()
    max_history: int = Field(200, ge=0, le=10_000)
    max_history_bytes: int = Field(
        262_144,
        ge=1_024,
        le=524_288,
        description="The anonymous history's JSON at most: it is stored with the lead and sent in its merge,"
        " both under the producer's 1 MiB.",
    )
    max_seen_event_ids: int = Field(1000, ge=10, le=100_000)

    @cached_property
    def title_memo(self) -> dict[str, Any]:
        """Job title -> its facts under these rules (`normalise.classify_title`): every event of a
        lead carries the same title, and matching it against every rule cost more than the rest of
        the profile's derivation."""
        return {}

    @field_validator("country_aliases")
    @classmethod
    def _alpha2(cls, value: dict[str, str]) -> dict[str, str]:
        folded: dict[str, str] = {}  # as `normalise_country` compares names
        for name, code in value.items():
            if not re.fullmatch(r"[A-Z]{2}", code):
                raise ValueError(f"{name!r}: {code!r} is not an ISO 3166-1 alpha-2 code")
            key = fold_name(name)
            if folded.get(key, code) != code:
                raise ValueError(f"{name!r}: names {key!r}, given {folded[key]!r} already, as {code!r}")
            folded[key] = code
        return folded

    @field_validator("competitor_domains", "customer_domains", mode="before")
    @classmethod
    def _domains(cls, value: Any) -> Any:
        if isinstance(value, list | tuple | set | frozenset):
            return frozenset(str(d).strip().lower().lstrip("@") for d in value)
        return value


def load_config(path: Path = DEFAULT_CONFIG) -> EnrichConfig:
    """Read and validate the file; any problem is a ConfigError naming file, key and reason."""
    return load_yaml_model(path, EnrichConfig, ConfigError)
