"""Nurture sequences from `config/nurture.yaml`, validated at start-up with errors naming file and key."""

from __future__ import annotations

from datetime import time, timedelta
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    field_validator,
    model_validator,
)

from schemas.sales import SalesActivityKind
from schemas.stage import LifecycleStage, Temperature
from services.runtime.config_file import load_yaml_model
from services.runtime.tracking_tokens import NAME_MAX

SEGMENT_FIELDS = ("industry", "employee_range", "country", "department", "seniority", "email_kind")
LONGEST = timedelta(days=3650)
"""Longest duration a rule may give: ten years is "never" enough, and a larger one overflowed the
date of the step or link it was added to, crashing the agent."""


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Enrolment(_Rule):
    """Who enters a sequence; every listed criterion must match (an empty list matches anyone)."""

    stages: tuple[LifecycleStage, ...] = ()
    temperatures: tuple[Temperature, ...] = ()
    segment: dict[str, tuple[str, ...]] = Field(
        default_factory=dict, description=f"Profile field -> accepted values; fields: {SEGMENT_FIELDS}"
    )
    sources: tuple[str, ...] = Field((), description="Source channel or utm_source of the stage change.")
    content_consumed: tuple[str, ...] = Field(
        (), description="Any of these engagement facts (interaction type or content:<asset id>)."
    )
    sales_activities: tuple[SalesActivityKind, ...] = Field(
        (), description="Enrol when sales reported one of these (e.g. rejected) since the last enrolment."
    )

    @field_validator("segment")
    @classmethod
    def _known_fields(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        unknown = sorted(set(value) - set(SEGMENT_FIELDS))
        if unknown:
            raise ValueError(f"unknown segment field(s) {unknown}; use {', '.join(SEGMENT_FIELDS)}")
        return {k: tuple(v.lower() for v in values) for k, values in value.items()}


class Step(_Rule):
    # NAME_MAX, here and for sequence names: a mail's signed links carry both, and a longer one was
    # taken here and then failed every mail of its sequence, holding the outbox.
    template_id: str = Field(min_length=1, max_length=NAME_MAX)
    channel: Literal["email"] = "email"
    delay: timedelta = Field(le=LONGEST, description="ISO 8601 duration or seconds, counted from `after`.")
    after: Literal["enrolment", "previous"] = "previous"
    skip_if: tuple[str, ...] = Field((), description="Skip the step when any of these facts is known.")

    @field_validator("delay")
    @classmethod
    def _not_negative(cls, value: timedelta) -> timedelta:
        if value < timedelta(0):
            raise ValueError("delay must not be negative")
        return value


class Exit(_Rule):
    """Per-sequence exits; sales-ready, hand-off, unsubscribe, bounce, withdrawal, erasure always exit."""

    stages: tuple[LifecycleStage, ...] = ()
    temperatures: tuple[Temperature, ...] = ()
    superseded_by: tuple[str, ...] = Field((), description="Leave when enrolled in one of these sequences.")


class Reenrolment(_Rule):
    allowed: bool = False
    cooldown: timedelta = Field(
        timedelta(days=90), le=LONGEST, description="Time after the last enrolment ended."
    )


class Sequence(_Rule):
    description: str = ""
    enrol: Enrolment
    steps: tuple[Step, ...] = Field(min_length=1)
    exit: Exit = Field(default_factory=Exit)
    reenrolment: Reenrolment = Field(default_factory=Reenrolment)


class FrequencyCap(_Rule):
    """At most `max_messages` to one lead within any `window`, across all sequences."""

    max_messages: int = Field(ge=1)
    window: timedelta = Field(gt=timedelta(0), le=LONGEST)


class QuietHours(_Rule):
    """No sends from `start` to `end` (may wrap midnight) in the lead's own time zone."""

    start: time
    end: time
    default_timezone: str = "Europe/Berlin"

    @field_validator("default_timezone")
    @classmethod
    def _zone_exists(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:  # OSError: "Europe", a directory
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value


class DoubleOptIn(_Rule):
    """The mail that asks a lead to confirm a consent given on a form (`consent_given`), with the
    signed link to capture's confirmation page. Transactional: neither the frequency cap nor quiet
    hours hold it, since the person is waiting for it."""

    template_id: str = Field("consent-confirm", min_length=1, max_length=NAME_MAX)
    resend_after: timedelta = Field(
        timedelta(days=7),
        gt=timedelta(0),
        le=LONGEST,
        description="A consent given again sooner (another form, the same form sent twice) mails no "
        "second request: the first link still works (NURTURE_CONSENT_TOKEN_TTL_SECONDS, 7 days), and "
        "nobody can flood an inbox through a form.",
    )


class NurtureRules(_Rule):
    sequences: dict[Annotated[str, StringConstraints(min_length=1, max_length=NAME_MAX)], Sequence] = Field(
        min_length=1
    )
    frequency_cap: FrequencyCap
    double_opt_in: DoubleOptIn = Field(default_factory=DoubleOptIn)
    quiet_hours: QuietHours | None = None
    recent_event_ids: int = Field(64, ge=1, description="Per-lead memory of event ids for duplicates.")
    # How long a mailed confirmation link works: NURTURE_CONSENT_TOKEN_TTL_SECONDS, a setting and
    # not part of the file, given by `with_link_lifetime` at start-up (the default is the setting's).
    _link_lifetime: timedelta = PrivateAttr(default=timedelta(days=7))

    @property
    def link_lifetime(self) -> timedelta:
        return self._link_lifetime

    def with_link_lifetime(self, lifetime: timedelta) -> NurtureRules:
        """These rules where a confirmation link works for `lifetime`: steps wait for a consent's
        confirmation that long, and a link tells its mail by its expiry (services/nurture/domain.py)."""
        rules = self.model_copy()
        rules._link_lifetime = lifetime
        return rules

    @model_validator(mode="after")
    def _superseders_exist(self) -> NurtureRules:
        for name, sequence in self.sequences.items():
            for other in sequence.exit.superseded_by:
                if other not in self.sequences:
                    raise ValueError(f"sequences.{name}.exit.superseded_by: no sequence {other!r}")
        return self


class NurtureConfigError(ValueError):
    pass


def load_rules(path: Path) -> NurtureRules:
    """The validated rules; the error names the file, the key and the problem."""
    return load_yaml_model(path, NurtureRules, NurtureConfigError)
