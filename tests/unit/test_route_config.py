"""The routing file is validated at start-up with errors naming the file, key and problem."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from services.route import domain
from services.route.config import Absence, ConfigError, WorkingHours, load_config, parse_config
from tests.unit.test_route_domain import CONFIG, make_change

ROUTING = Path(__file__).resolve().parents[2] / "config" / "routing.yaml"


def test_the_shipped_routing_file_is_valid() -> None:
    config = load_config(ROUTING)
    assert config.team(config.fallback_team).reps
    assert {tier.name: tier.minutes for tier in config.sla.tiers} == {"hot": 5, "mql": 240}
    reminders = {tier.name: tier.remind_before for tier in config.sla.tiers}
    assert reminders == {"hot": timedelta(minutes=2), "mql": timedelta(minutes=30)}
    assert "NO" in config.regions["emea"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"fallback_team": "nobody"}, "fallback_team 'nobody' is not a team"),
        ({"rules": [{"name": "r", "team": "ghost"}]}, "rule 'r': team 'ghost' is not a team"),
        ({"rules": [{"name": "r", "team": "dach", "match": {"regions": ["mars"]}}]}, "region 'mars'"),
        ({"account_owners": {"x.com": "nobody"}}, "account_owners['x.com']: rep 'nobody'"),
        ({"rules": [{"name": "r", "team": "dach", "match": {"colour": "red"}}]}, "rules.0.match.colour"),
        ({"sla": {"default_tier": "gold"}}, "default_tier 'gold'"),
        ({"sla": {"tiers": [{"name": "hot", "minutes": 0}], "default_tier": "hot"}}, "sla.tiers.0.minutes"),
    ],
)
def test_errors_name_the_key_and_problem(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({**CONFIG, **change}, "routing.yaml")
    assert str(caught.value).startswith("routing.yaml: ")
    assert message in str(caught.value)


def test_rep_errors() -> None:
    teams = [{"name": "dach", "reps": [{"id": "a", "weight": 0, "timezone": "Mars/Olympus"}]}]
    with pytest.raises(ConfigError) as caught:
        parse_config({**CONFIG, "teams": teams, "rules": [], "account_owners": {}, "fallback_team": "dach"})
    text = str(caught.value)
    assert "teams.0.reps.0.weight" in text and "unknown time zone 'Mars/Olympus'" in text


def test_duplicate_reps_and_bad_hours() -> None:
    twice = [{"name": "a", "reps": [{"id": "x"}]}, {"name": "b", "reps": [{"id": "x"}]}]
    with pytest.raises(ConfigError, match="rep ids must be unique"):
        parse_config({"teams": twice, "fallback_team": "a"})
    hours = [{"name": "a", "working_hours": {"start": "18:00", "end": "09:00"}}]
    with pytest.raises(ConfigError, match="start must be before end"):
        parse_config({"teams": hours, "fallback_team": "a"})
    days = [{"name": "a", "working_hours": {"days": ["funday"]}}]
    with pytest.raises(ConfigError, match="days must be"):
        parse_config({"teams": days, "fallback_team": "a"})


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("teams: [\n")
    with pytest.raises(ConfigError, match=r"broken.yaml: not valid YAML"):
        load_config(broken)


def test_working_hours_defaults_are_what_the_docs_say() -> None:
    """No block: Mon-Fri 09:00-17:00 for a team, the team's hours for a rep; null: around the clock."""
    teams = [
        {"name": "office", "reps": [{"id": "a"}, {"id": "b", "working_hours": None}]},
        {"name": "always", "working_hours": None, "reps": [{"id": "c"}]},
    ]
    cfg = parse_config({"teams": teams, "fallback_team": "office"})
    office, always = cfg.team("office"), cfg.team("always")
    assert office.working_hours == WorkingHours(
        days=("mon", "tue", "wed", "thu", "fri"), start=time(9), end=time(17)
    )
    saturday_noon = datetime(2026, 11, 28, 12, tzinfo=UTC)
    for rep in office.reps:
        assert domain.unavailable_reason(rep, office, domain.RepStatus(), saturday_noon) == "off_hours"
    assert domain.unavailable_reason(always.reps[0], always, domain.RepStatus(), saturday_noon) is None


def _routing_file(tmp_path: Path, hours: str) -> Path:
    path = tmp_path / "routing.yaml"
    path.write_text(
        "teams:\n"
        "  - name: t\n"
        "    timezone: Europe/Berlin\n"
        f"    working_hours: {hours}\n"
        "    reps: [{id: a, timezone: Europe/Berlin}]\n"
        "fallback_team: t\n"
    )
    return path


@pytest.mark.parametrize(
    ("hours", "key", "hint"),
    [
        ("{start: 9:00, end: 17:00}", "teams.0.working_hours.start", "unquoted 9:00 as the number 540"),
        ('{start: "09:00", end: 17:00}', "teams.0.working_hours.end", "unquoted 17:00 as the number 1020"),
        ('{start: 9:00, end: "17:00"}', "teams.0.working_hours.start", "unquoted 9:00 as the number 540"),
        ('{start: "09:00+02:00", end: "17:00"}', "teams.0.working_hours.start", "no seconds or UTC offset"),
        ('{start: "09:00", end: "17:00:30"}', "teams.0.working_hours.end", "no seconds or UTC offset"),
    ],
)
def test_working_hours_must_be_quoted_hh_mm(tmp_path: Path, hours: str, key: str, hint: str) -> None:
    """YAML reads an unquoted 9:00 as 540 (base 60), which passed as 00:09 UTC and broke every lead."""
    path = _routing_file(tmp_path, hours)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    text = str(caught.value)
    assert text.startswith(f"{path}: {key}: ") and 'quoted "HH:MM"' in text and hint in text


def test_quoted_working_hours_are_local_times(tmp_path: Path) -> None:
    team = load_config(_routing_file(tmp_path, '{start: "9:00", end: "17:30"}')).team("t")
    assert team.working_hours is not None
    assert (team.working_hours.start, team.working_hours.end) == (time(9), time(17, 30))
    wednesday_0830_utc = datetime(2026, 11, 25, 8, 30, tzinfo=UTC)  # 09:30 in Berlin
    assert domain.unavailable_reason(team.reps[0], team, domain.RepStatus(), wednesday_0830_utc) is None
    assert WorkingHours(start=time(8), end=time(16)).start == time(8)  # a plain time, built in Python


def _absence_file(tmp_path: Path, absence: str, timezone: str = "Europe/Berlin") -> Path:
    path = tmp_path / "routing.yaml"
    path.write_text(
        "teams:\n"
        "  - name: t\n"
        "    working_hours: null\n"
        f"    reps: [{{id: a, timezone: {timezone}, out_of_office: [{absence}]}}]\n"
        "fallback_team: t\n"
    )
    return path


@pytest.mark.parametrize(
    "absence",
    [
        "{start: 2026-12-24, end: 2027-01-02}",  # YAML reads these as dates
        '{start: "2026-12-24", end: "2027-01-02"}',
        '{start: "2026-12-24 00:00", end: "2027-01-03T00:00"}',
        "{start: 2026-12-24 00:00:00, end: 2027-01-03 00:00:00}",  # YAML timestamps without an offset
    ],
)
def test_absences_without_an_offset_are_the_reps_local_days(tmp_path: Path, absence: str) -> None:
    """ "Out 24 Dec to 2 Jan": from the start of the 24th to the end of the 2nd, in the rep's timezone."""
    team = load_config(_absence_file(tmp_path, absence)).team("t")
    rep, berlin = team.reps[0], ZoneInfo("Europe/Berlin")
    assert rep.out_of_office == (
        Absence(start=datetime(2026, 12, 24, tzinfo=berlin), end=datetime(2027, 1, 3, tzinfo=berlin)),
    )
    reasons = {
        moment: domain.unavailable_reason(rep, team, domain.RepStatus(), moment)
        for moment in (
            datetime(2026, 12, 23, 22, 59, tzinfo=UTC),  # 23:59 on the 23rd in Berlin
            datetime(2026, 12, 23, 23, 0, tzinfo=UTC),  # midnight starting the 24th
            datetime(2027, 1, 2, 22, 59, tzinfo=UTC),  # 23:59 on the 2nd
            datetime(2027, 1, 2, 23, 0, tzinfo=UTC),  # back on the 3rd
        )
    }
    assert list(reasons.values()) == [None, "out_of_office", "out_of_office", None]


def test_an_absence_with_an_offset_is_kept_as_written(tmp_path: Path) -> None:
    absence = '{start: "2026-12-24T00:00:00Z", end: "2027-01-02T12:00:00+01:00"}'
    rep = load_config(_absence_file(tmp_path, absence)).team("t").reps[0]
    assert rep.out_of_office[0].start == datetime(2026, 12, 24, tzinfo=UTC)
    assert rep.out_of_office[0].end == datetime(2027, 1, 2, 11, tzinfo=UTC)


@pytest.mark.parametrize(
    ("absence", "message"),
    [
        (
            "{start: 2027-01-02, end: 2026-12-24}",
            "teams.0.reps.0.out_of_office.0: Value error, end must be after",
        ),
        ('{start: "24 Dec", end: 2027-01-02}', "teams.0.reps.0.out_of_office.0.start: "),
    ],
)
def test_absence_errors_name_the_key(tmp_path: Path, absence: str, message: str) -> None:
    path = _absence_file(tmp_path, absence)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: ") and message in str(caught.value)


def test_an_absence_in_the_fallback_team_does_not_break_routing() -> None:
    """Every lead checks the fallback team's reps: one naive absence there used to crash them all."""
    data = yaml.safe_load(ROUTING.read_text())
    data["teams"][3]["reps"][0]["out_of_office"] = [{"start": "2026-12-24", "end": "2027-01-02"}]
    cfg = parse_config(data)
    change = make_change("lead-1", country="DE")
    decision = domain.route(change, cfg)
    for now in (datetime(2026, 11, 25, 10, tzinfo=UTC), datetime(2026, 12, 28, 10, tzinfo=UTC)):
        picked = {
            group.team: [c.rep_id for c in group.candidates]
            for group in domain.groups(decision, cfg, {}, now)
        }
        assert ("sdr-emea" in picked.get("inbound-sdr", [])) is (now.month == 11)


@pytest.mark.parametrize(
    ("absence", "key", "problem"),
    [
        ("{start: 20261224, end: 20261231}", "out_of_office.0.start", "20261224 is a number, not a date"),
        ("{start: 2026-12-24, end: 20261231}", "out_of_office.0.end", "20261231 is a number, not a date"),
        ("{start: 1798070400, end: 2027-01-02}", "out_of_office.0.start", "1798070400 is a number"),
        ("{start: 2026-12-24, end: 1798070400.5}", "out_of_office.0.end", "1798070400.5 is a number"),
        ("{start: yes, end: 2027-01-02}", "out_of_office.0.start", "True is a yes/no value, not a date"),
        ("20261224", "out_of_office.0", "20261224 is not an absence; write {start: YYYY-MM-DD"),
    ],
)
def test_an_absence_written_as_a_number_is_refused_not_read_as_unix_time(
    tmp_path: Path, absence: str, key: str, problem: str
) -> None:
    """YAML reads an unquoted 20261224 as a number, which pydantic took for Unix time: a leave in
    August 1970 that never applies, and the rep got leads over Christmas."""
    path = _absence_file(tmp_path, absence)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    text = str(caught.value)
    assert text.startswith(f"{path}: teams.0.reps.0.{key}: ") and problem in text
    if key.endswith(("start", "end")):
        assert "write a date (YYYY-MM-DD) or an ISO time" in text


@pytest.mark.parametrize(
    ("days", "weekdays"),
    [
        (["mon-fri"], {0, 1, 2, 3, 4}),
        (["Monday", "Wednesday", "FRI"], {0, 2, 4}),
        (["monday-thursday", "sat"], {0, 1, 2, 3, 5}),
        (["sun-thu"], {6, 0, 1, 2, 3}),
        (["fri-mon"], {4, 5, 6, 0}),  # wraps past Sunday
        ([" tue - wed "], {1, 2}),
        (["Tues", "Thurs", "thur", "weds"], {1, 2, 3}),  # forms taken before ranges were: still taken
        (["tues-thurs"], {1, 2, 3}),
    ],
)
def test_working_days_take_names_and_ranges(days: list[str], weekdays: set[int]) -> None:
    """`mon-fri` was read as Monday alone (the first three letters of whatever was written)."""
    hours = WorkingHours.model_validate({"days": days})
    assert hours.weekdays == frozenset(weekdays)
    assert set(hours.days) <= {"mon", "tue", "wed", "thu", "fri", "sat", "sun"}


@pytest.mark.parametrize("entry", ["monkey", "Friday-ish", "mon-", "mon-fri-sat", "mo", "1", "weekdays"])
def test_an_unknown_working_day_is_refused_naming_the_entry_and_key(entry: str) -> None:
    teams = [{"name": "a", "working_hours": {"days": ["tue", entry]}}]
    with pytest.raises(ConfigError) as caught:
        parse_config({"teams": teams, "fallback_team": "a"}, "routing.yaml")
    text = str(caught.value)
    assert "teams.0.working_hours.days" in text and repr(entry) in text and "days must be" in text


@pytest.mark.parametrize(
    ("sla", "message"),
    [
        (
            {"tiers": [{"name": "hot", "minutes": 5}, {"name": "hot", "minutes": 10}], "default_tier": "hot"},
            "tier names must be unique: 'hot'",
        ),
        ({"tiers": [{"name": "hot", "minutes": ".inf"}], "default_tier": "hot"}, "sla.tiers.0.minutes"),
        ({"tiers": [{"name": "hot", "minutes": 1e12}], "default_tier": "hot"}, "sla.tiers.0.minutes"),
    ],
)
def test_sla_tiers_that_cannot_work_are_refused(sla: dict[str, Any], message: str) -> None:
    """A duplicate tier name shadowed the second; `.inf` or a huge deadline raised OverflowError at
    the first hand-off instead of at start-up."""
    raw = yaml.safe_dump({**CONFIG, "sla": sla}).replace("'.inf'", ".inf")
    with pytest.raises(ConfigError) as caught:
        parse_config(yaml.safe_load(raw), "routing.yaml")
    assert message in str(caught.value)


def test_a_rule_whose_employee_bounds_cross_is_refused() -> None:
    rules = [{"name": "r", "team": "dach", "match": {"min_employees": 500, "max_employees": 50}}]
    with pytest.raises(ConfigError) as caught:
        parse_config({**CONFIG, "rules": rules}, "routing.yaml")
    assert "rules.0.match" in str(caught.value) and "min_employees 500 > max_employees 50" in str(
        caught.value
    )


def _tier(**tier: Any) -> dict[str, Any]:
    return {**CONFIG, "sla": {"tiers": [{"name": "hot", "minutes": 5, **tier}], "default_tier": "hot"}}


@pytest.mark.parametrize(
    ("remind_before", "problem"),
    [
        ("PT0S", "tier 'hot': remind_before must be positive, not PT0S"),
        ("-PT1M", "tier 'hot': remind_before must be positive, not -PT1M"),
        ("PT5M", "tier 'hot': remind_before (PT5M) must be shorter than the tier's 5 minutes"),
        ("PT1H", "tier 'hot': remind_before (PT1H) must be shorter than the tier's 5 minutes"),
    ],
)
def test_a_reminder_that_would_go_out_at_once_or_never_is_refused_naming_the_tier(
    remind_before: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(_tier(remind_before=remind_before), "routing.yaml")
    assert str(caught.value).startswith("routing.yaml: ") and "sla.tiers.0" in str(caught.value)
    assert problem in str(caught.value)


def test_remind_before_is_optional_per_tier_and_the_timer_looks_as_far_ahead_as_the_longest() -> None:
    assert parse_config(_tier()).sla.tiers[0].remind_before is None
    assert parse_config(_tier()).sla.longest_reminder is None
    sla = {
        "tiers": [
            {"name": "hot", "minutes": 5, "remind_before": "PT4M59S"},
            {"name": "warm", "minutes": 60},
            {"name": "mql", "minutes": 240, "remind_before": "PT30M"},
        ],
        "default_tier": "mql",
    }
    parsed = parse_config({**CONFIG, "sla": sla}).sla
    assert [tier.remind_before for tier in parsed.tiers] == [
        timedelta(minutes=4, seconds=59),
        None,
        timedelta(minutes=30),
    ]
    assert parsed.longest_reminder == timedelta(minutes=30)
