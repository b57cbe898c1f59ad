"""The routing configuration (`config/routing.yaml`): teams, reps, rules, ownership and SLA tiers.

Validated once at start-up so a typo stops the service with the file, key and problem named,
instead of silently routing every lead to the fallback queue.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AnyHttpUrl,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    field_serializer,
    field_validator,
    model_validator,
)

from schemas.sales import MAX_CAPACITY
from schemas.stage import LifecycleStage, Temperature
from services.runtime.config_file import iso_duration, read_yaml, validate

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
# As written -> DAYS' name: each day's name shortened to any length from three letters (mon, tues,
# thurs, ...), as entries were read before ranges were, and the usual "weds".
_DAY_NAMES = {full[:n]: full[:3] for full in _FULL_DAYS for n in range(3, len(full) + 1)} | {"weds": "wed"}
_MAX_SLA_MINUTES = 366 * 24 * 60  # a year: beyond it a deadline means nothing (and overflowed)
_HTTP_URL: TypeAdapter[AnyHttpUrl] = TypeAdapter(AnyHttpUrl)
_HH_MM = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r}") from exc
    return value


class WorkingHours(_Model):
    """Working days and hours, read in the rep's time zone (a team's SLA clock: in the team's).

    A team without the block works Mon-Fri 09:00-17:00 (these defaults) and one with
    `working_hours: null` around the clock; a rep without the block, or with null, keeps the team's.
    """

    days: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri")
    start: time = time(9, 0)
    end: time = time(17, 0)

    @field_validator("start", "end", mode="before")
    @classmethod
    def _quoted_hh_mm(cls, value: Any) -> time:
        """Only "HH:MM" or a plain time: YAML reads an unquoted 9:00 as 540 (minutes in base 60),
        which pydantic would take for 00:09 UTC, and an offset-carrying time cannot meet a local one."""
        if isinstance(value, time) and value.tzinfo is None:
            return value
        if isinstance(value, str) and (hh_mm := _HH_MM.fullmatch(value.strip())):
            return time(int(hh_mm[1]), int(hh_mm[2]))
        hint = "no seconds or UTC offset: the rep's or team's timezone applies"
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 24 * 60:
            hint = f"YAML reads an unquoted {value // 60}:{value % 60:02d} as the number {value}"
        raise ValueError(f'{value!r} is not a time of day; write a quoted "HH:MM" such as "09:00" ({hint})')

    @field_serializer("start", "end", when_used="json")
    def _as_hh_mm(self, value: time) -> str:
        """Dumped as the "HH:MM" the file takes, so a dumped config validates again."""
        return value.isoformat(timespec="minutes")

    @field_validator("days")
    @classmethod
    def _known_days(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        """Day names (`mon`, `tues` or `monday`, any case) and ranges of them (`mon-fri`; one that runs past
        Sunday wraps: `fri-mon` is Friday to Monday), as 3-letter names in the week's order. Anything
        else is refused: `mon-fri` was once read as Monday alone."""
        weekdays: set[int] = set()
        for entry in value:
            found = _weekdays(entry)
            if found is None:
                raise ValueError(
                    f"days must be day names (mon, tues, monday, ...) or ranges of them (mon-fri); "
                    f"{entry!r} is neither"
                )
            weekdays |= found
        if not weekdays:
            raise ValueError("days must name at least one day (mon-fri, sat, ...)")
        return tuple(day for index, day in enumerate(DAYS) if index in weekdays)

    @model_validator(mode="after")
    def _start_before_end(self) -> WorkingHours:
        if self.start >= self.end:
            raise ValueError("start must be before end (overnight shifts are two teams)")
        return self

    @property
    def weekdays(self) -> frozenset[int]:
        return frozenset(DAYS.index(day) for day in self.days)


def _weekdays(entry: str) -> set[int] | None:
    """The weekdays (0 = Monday) a `days` entry names, or None when it names none."""
    parts = [part.strip().lower() for part in entry.split("-")]
    if len(parts) > 2 or any(part not in _DAY_NAMES for part in parts):
        return None
    first, last = (DAYS.index(_DAY_NAMES[part]) for part in (parts[0], parts[-1]))
    return {(first + step) % 7 for step in range((last - first) % 7 + 1)}


class Absence(_Model):
    """A rep's configured leave, from `start` until just before `end`; `Rep` turns a date or a time
    without a UTC offset into the rep's local time before this sees it."""

    start: AwareDatetime
    end: AwareDatetime

    @model_validator(mode="before")
    @classmethod
    def _a_start_and_an_end(cls, data: Any) -> Any:
        """A bare entry (`[20261224]`, YAML's number for an unquoted date without dashes) says which."""
        if isinstance(data, bool | int | float):
            raise ValueError(f"{data!r} is not an absence; write {{start: YYYY-MM-DD, end: YYYY-MM-DD}}")
        return data

    @field_validator("start", "end", mode="before")
    @classmethod
    def _not_a_number(cls, value: Any) -> Any:
        """pydantic reads a number as Unix time: an unquoted 20261224 would be a day in August 1970."""
        if isinstance(value, bool | int | float):
            kind = "a yes/no value" if isinstance(value, bool) else "a number"
            raise ValueError(
                f"{value!r} is {kind}, not a date; write a date (YYYY-MM-DD) or an ISO time "
                "(YYYY-MM-DDTHH:MM, with a UTC offset or in the rep's timezone)"
            )
        return value

    @model_validator(mode="after")
    def _end_after_start(self) -> Absence:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


def _local_moment(value: Any, zone: ZoneInfo, *, end: bool) -> Any:
    """A bare date or a time without an offset in the rep's zone: what "out 24 Dec to 2 Jan" means.

    A start date is the beginning of its day, an end date the end of its day (the rep is back the day
    after). Anything else is returned as given, for the field to accept or refuse.
    """
    if isinstance(value, str):
        text = value.strip()
        try:
            value = date.fromisoformat(text) if _DATE.fullmatch(text) else datetime.fromisoformat(text)
        except ValueError:
            return value
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=zone)
    if isinstance(value, date):
        return datetime.combine(value + timedelta(days=1) if end else value, time(), tzinfo=zone)
    return value


def _local_absence(entry: Any, zone: ZoneInfo) -> Any:
    if not isinstance(entry, dict):
        return entry
    local = {
        key: _local_moment(entry[key], zone, end=key == "end") for key in ("start", "end") if key in entry
    }
    return {**entry, **local}


class Rep(_Model):
    id: str = Field(min_length=1)
    name: str | None = None
    email: str | None = Field(
        None,
        description="Where SLA notices go: the rep's reminders before a deadline (a tier's remind_before), "
        "and breaches when a team's `lead` or the `escalation` names this rep.",
    )
    weight: int = Field(1, ge=1, le=1000, description="Relative share of the team's leads.")
    capacity: int = Field(20, ge=0, le=MAX_CAPACITY, description="Most open leads at once.")
    timezone: str = "UTC"
    working_hours: WorkingHours | None = Field(None, description="None: the team's hours.")
    out_of_office: tuple[Absence, ...] = Field(
        (),
        description="Leave; a date or an offset-less time is in the rep's timezone, an end date inclusive.",
    )
    available: bool = True

    @field_validator("timezone")
    @classmethod
    def _check_zone(cls, value: str) -> str:
        return _zone(value)

    @model_validator(mode="before")
    @classmethod
    def _absences_in_local_time(cls, data: Any) -> Any:
        """Read out_of_office dates and offset-less times in the rep's timezone (an unknown zone is
        reported on `timezone`; UTC stands in so its absences add no errors of their own)."""
        if not isinstance(data, dict) or not isinstance(data.get("out_of_office"), list | tuple):
            return data
        try:
            zone = ZoneInfo(str(data.get("timezone", "UTC")))
        except (ZoneInfoNotFoundError, ValueError):
            zone = ZoneInfo("UTC")
        return {**data, "out_of_office": [_local_absence(entry, zone) for entry in data["out_of_office"]]}


class Team(_Model):
    name: str = Field(min_length=1)
    lead: str | None = Field(None, description="Team lead notified of SLA breaches (e-mail or rep id).")
    timezone: str = Field("UTC", description="For business-hour SLA tiers.")
    working_hours: WorkingHours | None = Field(
        default_factory=WorkingHours, description="Business hours; null for around the clock."
    )
    reps: tuple[Rep, ...] = ()
    crm_webhook_url: str | None = Field(
        None,
        description="Each of the team's hand-offs is POSTed here, signed with ROUTE_CRM_WEBHOOK_SECRET "
        "(services/route/crm.py).",
    )
    crm_webhook_secret_env: str | None = Field(
        None,
        pattern=r"^[A-Z_][A-Z0-9_]*$",
        description="The environment variable holding this team's own webhook secret (new and old, "
        "comma-separated, while rotating), for a CRM run by someone else; unset: ROUTE_CRM_WEBHOOK_SECRET.",
    )

    @field_validator("timezone")
    @classmethod
    def _check_zone(cls, value: str) -> str:
        return _zone(value)

    @field_validator("crm_webhook_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None:
            _HTTP_URL.validate_python(value)
        return value

    @model_validator(mode="after")
    def _secret_needs_a_webhook(self) -> Team:
        if self.crm_webhook_secret_env and not self.crm_webhook_url:
            raise ValueError("crm_webhook_secret_env is set but crm_webhook_url is not: nothing to sign")
        return self


class Match(_Model):
    """Every given criterion must hold; an empty list means "any"."""

    countries: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    employee_ranges: tuple[str, ...] = ()
    min_employees: int | None = Field(None, ge=0)
    max_employees: int | None = Field(None, ge=0)
    industries: tuple[str, ...] = ()
    sources: tuple[str, ...] = Field((), description="Source channels (web, meta_ads, ...).")
    lifecycle: tuple[LifecycleStage, ...] = ()
    temperatures: tuple[Temperature, ...] = ()

    @field_validator("countries")
    @classmethod
    def _upper(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(v.upper() for v in value)

    @model_validator(mode="after")
    def _bounds_in_order(self) -> Match:
        low, high = self.min_employees, self.max_employees
        if low is not None and high is not None and low > high:
            raise ValueError(f"min_employees {low} > max_employees {high}: no company matches")
        return self

    @field_validator("industries", "sources", "employee_ranges", "regions")
    @classmethod
    def _lower(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(v.lower() for v in value)


class Rule(_Model):
    name: str = Field(min_length=1)
    team: str
    match: Match = Field(default_factory=Match)


class SlaTier(_Model):
    """First matching tier sets the contact deadline."""

    name: str = Field(min_length=1)
    minutes: float = Field(gt=0, le=_MAX_SLA_MINUTES, description="At most a year (527,040 minutes).")
    business_hours: bool = Field(False, description="Count only the team's business hours.")
    temperatures: tuple[Temperature, ...] = ()
    lifecycle: tuple[LifecycleStage, ...] = ()
    remind_before: timedelta | None = Field(
        None,
        description="Remind the rep (the team lead while the lead is queued) this long before the "
        "deadline, in wall-clock time, while nobody has contacted the lead; an ISO-8601 duration "
        "(PT2M). None: no reminder for this tier.",
    )

    @model_validator(mode="after")
    def _reminder_inside_the_deadline(self) -> SlaTier:
        """A reminder at or before the hand-off (or never, for zero) would only be noise."""
        remind = self.remind_before
        if remind is None:
            return self
        written = iso_duration(remind)
        if remind <= timedelta(0):
            raise ValueError(f"tier {self.name!r}: remind_before must be positive, not {written}")
        if remind >= timedelta(minutes=self.minutes):
            raise ValueError(
                f"tier {self.name!r}: remind_before ({written}) must be shorter than the tier's "
                f"{self.minutes:g} minutes, else the reminder would go out at the hand-off"
            )
        return self


class SlaPolicy(_Model):
    tiers: tuple[SlaTier, ...] = (
        SlaTier(name="hot", minutes=5, temperatures=(Temperature.HOT,)),
        SlaTier(
            name="mql",
            minutes=240,
            business_hours=True,
            lifecycle=(LifecycleStage.MQL, LifecycleStage.PQL, LifecycleStage.SQL),
        ),
    )
    default_tier: str = Field("mql", description="Tier for a sales-ready lead no tier matches.")
    reassign_on_breach: bool = True
    max_reassignments: int = Field(3, ge=0, description="After this many breaches the lead stays put.")
    escalation: tuple[str, ...] = Field(
        (), description="Who is told on the 2nd, 3rd, ... breach, beyond the team lead."
    )
    activity_clock_skew: timedelta = Field(
        timedelta(minutes=5),
        ge=timedelta(0),
        le=timedelta(hours=1),
        description="How far a sales tool's clock may run behind route's: an activity dated up to this"
        " before a hand-off chain began still belongs to it (a rep's first call comes within minutes).",
    )

    @model_validator(mode="after")
    def _default_exists(self) -> SlaPolicy:
        names = [tier.name for tier in self.tiers]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:  # the first would shadow the others, which never match
            raise ValueError(f"tier names must be unique: {', '.join(map(repr, repeated))}")
        if self.default_tier not in {tier.name for tier in self.tiers}:
            raise ValueError(f"default_tier {self.default_tier!r} is not one of the tiers")
        return self

    @property
    def longest_reminder(self) -> timedelta | None:
        """How far ahead of now the SLA timer looks for deadlines to remind of; None: no tier reminds."""
        reminders = [tier.remind_before for tier in self.tiers if tier.remind_before is not None]
        return max(reminders, default=None)


class RoutingConfig(_Model):
    teams: tuple[Team, ...] = Field(min_length=1)
    regions: dict[str, tuple[str, ...]] = Field(default_factory=dict, description="region -> countries")
    rules: tuple[Rule, ...] = ()
    account_owners: dict[str, str] = Field(default_factory=dict, description="company domain -> rep id")
    fallback_team: str
    sla: SlaPolicy = Field(default_factory=SlaPolicy)

    @field_validator("regions")
    @classmethod
    def _normalise_regions(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        return {name.lower(): tuple(c.upper() for c in countries) for name, countries in value.items()}

    @field_validator("account_owners")
    @classmethod
    def _normalise_domains(cls, value: dict[str, str]) -> dict[str, str]:
        return {domain.lower().strip(): rep for domain, rep in value.items()}

    @model_validator(mode="after")
    def _references(self) -> RoutingConfig:
        teams = [team.name for team in self.teams]
        if len(set(teams)) != len(teams):
            raise ValueError("team names must be unique")
        reps = [rep.id for team in self.teams for rep in team.reps]
        if len(set(reps)) != len(reps):
            raise ValueError("a rep belongs to exactly one team (rep ids must be unique)")
        if self.fallback_team not in teams:
            raise ValueError(f"fallback_team {self.fallback_team!r} is not a team")
        for rule in self.rules:
            if rule.team not in teams:
                raise ValueError(f"rule {rule.name!r}: team {rule.team!r} is not a team")
            for region in rule.match.regions:
                if region not in self.regions:
                    raise ValueError(f"rule {rule.name!r}: region {region!r} is not defined under regions")
        for domain, rep in self.account_owners.items():
            if rep not in reps:
                raise ValueError(f"account_owners[{domain!r}]: rep {rep!r} is not in any team")
        named = [(f"teams[{t.name!r}].lead", t.lead) for t in self.teams if t.lead]
        named += [(f"sla.escalation[{i}]", entry) for i, entry in enumerate(self.sla.escalation)]
        for where, entry in named:
            problem = self._unreachable(entry)
            if problem:
                raise ValueError(f"{where}: {problem}")
        return self

    def _unreachable(self, entry: str) -> str | None:
        """Why an SLA notice could not reach `entry`, or None when it can."""
        if self.address(entry) is not None:
            return None
        if self.rep(entry) is None:
            return f"{entry!r} is neither an e-mail address nor a rep id"
        return f"rep {entry!r} is told of SLA breaches but has no email"

    def address(self, entry: str) -> str | None:
        """The e-mail address of a notify entry: itself, or the rep's it names."""
        if "@" in entry:
            return entry
        found = self.rep(entry)
        return found[1].email if found else None

    def team(self, name: str) -> Team:
        for team in self.teams:
            if team.name == name:
                return team
        raise KeyError(name)

    def rep(self, rep_id: str) -> tuple[Team, Rep] | None:
        for team in self.teams:
            for rep in team.reps:
                if rep.id == rep_id:
                    return team, rep
        return None


class ConfigError(ValueError):
    """The routing file is missing or wrong; the message names the file, key and problem."""


def parse_config(data: Any, source: str = "<routing>") -> RoutingConfig:
    return validate(RoutingConfig, data, source, ConfigError)


def load_config(path: Path) -> RoutingConfig:
    return parse_config(read_yaml(path, ConfigError), str(path))
