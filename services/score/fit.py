"""Fit points from the profile and BANT, and the hard disqualifiers. Pure functions."""

from __future__ import annotations

import re

from pydantic import JsonValue

from schemas.profile import LeadProfile
from schemas.stage import Reason
from services.score.rules import BantCriterion, FitRules
from services.score.state import BantState

_RANGE = re.compile(r"(\d[\d,.]*)")
BANT_FIELDS = ("budget", "authority", "need", "timing")


def employees_of(profile: LeadProfile) -> int | None:
    """Employee count, or the lower bound of the employee range ("201-500", "1000+")."""
    firm = profile.firmographics
    if firm.employees is not None:
        return firm.employees
    if firm.employee_range:
        match = _RANGE.search(firm.employee_range)
        if match:
            return int(match.group(1).replace(",", "").replace(".", ""))
    return None


# (rule, points, detail): plain tuples, since fit is evaluated several times per event and a
# `Reason` model is only needed when a stage change explains itself (reasons_of).
FitTerm = tuple[str, float, str | None]


def _lookup(table: dict[str, float], value: str | None, label: str) -> FitTerm | None:
    if not value:
        return None
    points = table.get(value.lower())
    return None if points is None else (f"{label}:{value.lower()}", points, None)


def fit_terms(profile: LeadProfile | None, bant: BantState, rules: FitRules) -> list[FitTerm]:
    """Every fit rule that applies, with its points (none with zero points)."""
    terms: list[FitTerm] = []
    if profile is not None:
        country = (profile.country or profile.firmographics.country or "").upper()
        candidates = [
            _lookup(rules.seniority, profile.seniority, "seniority"),
            _lookup(rules.department, profile.department, "department"),
            _lookup(rules.industry, profile.firmographics.industry, "industry"),
        ]
        terms.extend(t for t in candidates if t is not None)
        employees = employees_of(profile)
        if employees is not None:
            for band in rules.company_size:
                if band.contains(employees):
                    terms.append(("company_size", band.points, str(employees)))
                    break
        if country and country in rules.territories.countries:
            terms.append(("territory", rules.territories.points, country))
        email_points = rules.email_kind.get(profile.email_kind)
        if email_points is not None:
            terms.append((f"email:{profile.email_kind.value}", email_points, None))
        if profile.is_competitor:
            terms.append(("competitor", rules.competitor, None))
    for name in BANT_FIELDS:
        criterion: BantCriterion = getattr(rules.bant, name)
        if getattr(bant, name) is True and criterion.points:
            terms.append((f"bant:{name}", criterion.points, None))
    return [t for t in terms if t[1] != 0]


def fit_points(profile: LeadProfile | None, bant: BantState, rules: FitRules) -> float:
    return sum(points for _, points, _ in fit_terms(profile, bant, rules))


def reasons_of(terms: list[FitTerm]) -> list[Reason]:
    """Fit terms as a stage change's reasons."""
    return [Reason(rule=rule, points=points, detail=detail) for rule, points, detail in terms]


def disqualifier(profile: LeadProfile | None, rules: FitRules) -> str | None:
    """The name of the first hard disqualifier the profile matches, if any."""
    if profile is None:
        return None
    rule = rules.disqualify
    if rule.competitor and profile.is_competitor:
        return "competitor"
    if profile.email_kind in rule.email_kinds:
        return f"email:{profile.email_kind.value}"
    country = (profile.country or profile.firmographics.country or "").upper()  # as the territory fit
    if country and country in {c.upper() for c in rule.countries}:
        return f"country:{country}"
    if profile.seniority and profile.seniority.lower() in rule.seniorities:
        return f"seniority:{profile.seniority.lower()}"
    return None


def _answer(value: JsonValue) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    text = str(value).strip().lower()
    return text or None


def bant_from_properties(
    bant: BantState,
    properties: dict[str, JsonValue],
    profile: LeadProfile | None,
    rules: FitRules,
    at: float,
) -> BantState:
    """BANT answers from form fields given at `at`; the later answer wins, by when it was given
    (`BantState.answered`). Authority is inferred from seniority only while nobody answered it: a
    rep's `bant_updated` or a form's role must not be undone by the next page view of a senior lead."""
    updates: dict[str, bool] = {}
    for name in BANT_FIELDS:
        criterion: BantCriterion = getattr(rules.bant, name)
        for prop in criterion.properties:
            answer = _answer(properties.get(prop))
            if answer is not None:
                updates[name] = answer not in criterion.unmet_values
                break
    if updates:
        bant = bant.answered(updates, at)
    seniority = (profile.seniority or "").lower() if profile else ""
    if bant.authority is None and seniority in rules.bant.authority_seniorities:
        bant = bant.model_copy(update={"authority": True})  # inferred, not answered: no time
    return bant


def bant_from_sales(bant: BantState, properties: dict[str, JsonValue], at: float) -> BantState:
    """A rep's BANT assessment at `at`: true/false (or yes/no) per criterion (`BantState.answered`)."""
    updates: dict[str, bool] = {}
    for name in BANT_FIELDS:
        value = properties.get(name)
        if isinstance(value, bool):
            updates[name] = value
        elif isinstance(value, str) and value.lower() in {"yes", "no", "true", "false", "met", "unmet"}:
            updates[name] = value.lower() in {"yes", "true", "met"}
    return bant.answered(updates, at) if updates else bant
