"""The scoring rules from `config/scoring.yaml`, validated by pydantic at start-up and on reload."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from enum import Enum
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from schemas.interaction import InteractionType
from schemas.profile import EmailKind
from services.runtime.errors import describe

DEFAULT_RULES_FILE = Path(__file__).resolve().parents[2] / "config" / "scoring.yaml"


class RulesError(ValueError):
    """The rules file is missing or invalid; the message names the file, the key and the problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SizeBand(_Strict):
    """Company-size points for employees in [min, max]."""

    min: int = Field(ge=0)
    max: int | None = Field(None, ge=0)
    points: float

    @model_validator(mode="after")
    def _ordered(self) -> SizeBand:
        if self.max is not None and self.max < self.min:
            raise ValueError(f"max ({self.max}) is below min ({self.min})")
        return self

    def contains(self, employees: int) -> bool:
        return employees >= self.min and (self.max is None or employees <= self.max)


class Territories(_Strict):
    countries: frozenset[str] = frozenset()
    points: float = 0.0

    @field_validator("countries", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        if isinstance(value, list | tuple | set | frozenset):
            return frozenset(str(v).upper() for v in value)
        return value


def _lowered(value: frozenset[str]) -> frozenset[str]:
    """Profile values and form answers are compared lower-cased, so the config's are too: `Student`
    in the file must match a student, not silently nobody."""
    return frozenset(v.lower() for v in value)


class Disqualifiers(_Strict):
    """Hard disqualifiers: any match moves the lead to `disqualified`."""

    competitor: bool = True
    email_kinds: frozenset[EmailKind] = frozenset({EmailKind.INVALID})
    countries: frozenset[str] = frozenset()
    seniorities: frozenset[str] = frozenset()

    _lower_seniorities = field_validator("seniorities", mode="after")(_lowered)


class BantCriterion(_Strict):
    """Where one BANT criterion comes from on a form, and which answers count as met."""

    properties: tuple[str, ...] = ()
    unmet_values: frozenset[str] = frozenset()
    points: float = 0.0

    _lower_unmet = field_validator("unmet_values", mode="after")(_lowered)


class BantRules(_Strict):
    budget: BantCriterion = BantCriterion()
    authority: BantCriterion = BantCriterion()
    need: BantCriterion = BantCriterion()
    timing: BantCriterion = BantCriterion()
    authority_seniorities: frozenset[str] = frozenset({"c_level", "vp", "owner", "director"})

    _lower_seniorities = field_validator("authority_seniorities", mode="after")(_lowered)


class FitRules(_Strict):
    seniority: dict[str, float] = Field(default_factory=dict)
    department: dict[str, float] = Field(default_factory=dict)
    company_size: tuple[SizeBand, ...] = ()
    industry: dict[str, float] = Field(default_factory=dict)
    territories: Territories = Territories()
    email_kind: dict[EmailKind, float] = Field(default_factory=dict)
    competitor: float = 0.0
    disqualify: Disqualifiers = Disqualifiers()
    bant: BantRules = BantRules()

    @field_validator("seniority", "department", "industry", mode="after")
    @classmethod
    def _lower_keys(cls, value: dict[str, float]) -> dict[str, float]:
        return {k.lower(): v for k, v in value.items()}


class EngagementRule(_Strict):
    """Points for one interaction type, optionally only when properties match."""

    name: str = Field(min_length=1, max_length=64)
    type: InteractionType
    points: float
    when: dict[str, str] = Field(default_factory=dict, description="property == value (case-insensitive)")
    when_contains: dict[str, str] = Field(default_factory=dict, description="value contained in property")
    daily_cap: int | None = Field(None, ge=1, description="At most this many scored events per UTC day.")


class Thresholds(_Strict):
    warm: float
    hot: float
    mql_fit: float
    mql_engagement: float

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if self.hot <= self.warm:
            raise ValueError(f"hot ({self.hot}) must be above warm ({self.warm})")
        return self


class HandRaisers(_Strict):
    types: frozenset[InteractionType] = frozenset(
        {InteractionType.DEMO_REQUEST, InteractionType.QUOTE_REQUEST, InteractionType.CALLBACK_REQUEST}
    )
    min_fit: float = 0.0
    hot_for: timedelta = Field(
        timedelta(days=3), gt=timedelta(0), description="How long a hand-raise keeps the lead hot."
    )


class ProductQualified(_Strict):
    usage_property: str = "usage"
    min_usage: float = Field(10.0, gt=0)


class ScoringRules(_Strict):
    half_life: timedelta = Field(description="Engagement halves over this period without activity.")
    late_event_window: timedelta = Field(
        timedelta(days=30), description="Events older than this before the lead's newest event are ignored."
    )
    recent_event_ids: int = Field(512, ge=16, le=100_000, description="Per-lead duplicate memory.")
    top_reasons: int = Field(6, ge=1, le=50)
    fit: FitRules = FitRules()
    engagement: tuple[EngagementRule, ...] = ()
    thresholds: Thresholds
    hand_raisers: HandRaisers = HandRaisers()
    product_qualified: ProductQualified = ProductQualified()
    _digest: tuple[int, str] | None = PrivateAttr(default=None)  # (id of the instance, its digest)

    @field_validator("half_life", "late_event_window")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be a positive duration, e.g. P14D or PT30S")
        return value

    @field_validator("engagement")
    @classmethod
    def _unique_names(cls, rules: tuple[EngagementRule, ...]) -> tuple[EngagementRule, ...]:
        seen: set[str] = set()
        for rule in rules:
            if rule.name in seen:
                raise ValueError(f"duplicate engagement rule name {rule.name!r}")
            seen.add(rule.name)
        return rules

    @field_validator("engagement")
    @classmethod
    def _none_shadowed(cls, rules: tuple[EngagementRule, ...]) -> tuple[EngagementRule, ...]:
        """The first rule of a type that matches wins (`domain.match_rule`), so one after a rule of
        its type without conditions could never score: list the conditional rules first."""
        catch_all: dict[str, str] = {}
        for rule in rules:
            if rule.type in catch_all:
                raise ValueError(
                    f"engagement rule {rule.name!r} can never match: {catch_all[rule.type]!r} above it "
                    f"takes every {rule.type.value} (list rules with conditions before the one without)"
                )
            if not rule.when and not rule.when_contains:
                catch_all[rule.type] = rule.name
        return rules

    @property
    def half_life_seconds(self) -> float:
        return self.half_life.total_seconds()

    @property
    def digest(self) -> str:
        """Names these rules (their content, not the file's time): each lead keeps the digest of the
        rules it was last evaluated under, so a worker that starts or takes over partitions with
        other rules than that evaluates it again (`DueIndex.rebuild`, services/score/due.py). Computed
        once per instance: a copy (`model_copy(update=...)`) is another instance, with its own. Sets
        are sorted first: their order follows each process's string hashing, and every worker, and
        every restart, must name the same rules alike."""
        cached = self._digest
        if cached is None or cached[0] != id(self):
            text = json.dumps(_canonical(self.model_dump()), sort_keys=True, default=str)
            cached = (id(self), hashlib.blake2b(text.encode(), digest_size=8).hexdigest())
            self._digest = cached
        return cached[1]


def _canonical(value: Any) -> Any:
    """`value` (a python-mode dump) with every set as a sorted list, so its JSON is one text."""
    if isinstance(value, dict):
        return {str(key): _canonical(item) for key, item in value.items()}
    if isinstance(value, set | frozenset):
        return sorted((_canonical(item) for item in value), key=lambda item: json.dumps(item, default=str))
    if isinstance(value, list | tuple):
        return [_canonical(item) for item in value]
    return value.value if isinstance(value, Enum) else value


def parse_rules(data: object, origin: str = "<rules>") -> ScoringRules:
    try:
        return ScoringRules.model_validate(data)
    except ValidationError as exc:
        raise RulesError(f"{origin}: invalid scoring rules: {describe(exc)}") from None


def load_rules(path: Path | str) -> ScoringRules:
    """Read and validate a rules file; raise RulesError naming the file, key and problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError(f"{path}: cannot read scoring rules: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RulesError(f"{path}: not valid YAML: {exc}") from None
    return parse_rules(data, str(path))


class RulesFile:
    """The active rules and the file they came from; `reload()` swaps them only when valid."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.current = load_rules(self.path)
        self._stamp = self._mtime()

    def _mtime(self) -> float | None:
        try:
            return self.path.stat().st_mtime
        except OSError:
            return None

    def reload(self) -> bool:
        """Load the file again if it changed; True when new rules are active. Raises RulesError."""
        stamp = self._mtime()
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        self.current = load_rules(self.path)
        return True
