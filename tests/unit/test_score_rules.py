"""Scoring rules file: the shipped one is valid, broken ones fail with file, key and problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.score.rules import DEFAULT_RULES_FILE, RulesError, load_rules


def test_shipped_rules_are_valid() -> None:
    rules = load_rules(DEFAULT_RULES_FILE)
    assert rules.half_life_seconds == 14 * 86400
    assert rules.thresholds.hot > rules.thresholds.warm
    assert {r.name for r in rules.engagement} >= {"demo_request", "whitepaper", "pricing_page", "unsubscribe"}


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("half_life: P1D\nthresholds: {warm: 50, hot: 40, mql_fit: 1, mql_engagement: 1}\n", "thresholds"),
        ("half_life: PT0S\nthresholds: {warm: 1, hot: 2, mql_fit: 1, mql_engagement: 1}\n", "half_life"),
        ("thresholds: {warm: 1, hot: 2, mql_fit: 1, mql_engagement: 1}\n", "half_life: Field required"),
        (
            "half_life: P1D\nthresholds: {warm: 1, hot: 2, mql_fit: 1, mql_engagement: 1}\n"
            "engagement: [{name: x, type: no_such_type, points: 1}]\n",
            "engagement.0.type",
        ),
        (
            "half_life: P1D\nthresholds: {warm: 1, hot: 2, mql_fit: 1, mql_engagement: 1}\n"
            "engagement: [{name: x, type: page_view, points: 1}, {name: x, type: email_open, points: 1}]\n",
            "duplicate engagement rule name 'x'",
        ),
        (
            "half_life: P1D\nthresholds: {warm: 1, hot: 2, mql_fit: 1, mql_engagement: 1}\n"
            "engagement: [{name: any_page, type: page_view, points: 1},"
            " {name: pricing, type: page_view, points: 10, when_contains: {url: /pricing}}]\n",
            "engagement rule 'pricing' can never match: 'any_page' above it takes every page_view",
        ),
        ("half_life: P1D\nthresholds: {warm: 1, hot: 2, mql_fit: 1, mql_engagement: 1}\nfitt: {}\n", "fitt"),
        (
            "half_life: P1D\nthresholds: {warm: 1, hot: 2, mql_fit: 1, mql_engagement: 1}\n"
            "hand_raisers: {hot_for: PT0S}\n",
            "hand_raisers.hot_for",
        ),
        ("half_life: [unclosed\n", "not valid YAML"),
    ],
)
def test_invalid_rules_name_file_key_and_problem(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "scoring.yaml"
    path.write_text(text)
    with pytest.raises(RulesError) as raised:
        load_rules(path)
    assert str(path) in str(raised.value)
    assert needle in str(raised.value)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="cannot read scoring rules"):
        load_rules(tmp_path / "nope.yaml")


def test_listed_values_match_whatever_their_case_in_the_file(tmp_path: Path) -> None:
    """Profile values and form answers are compared lower-cased; a capitalised entry in the file
    must still match (it once validated and matched nobody)."""
    from schemas.profile import LeadProfile
    from services.score.fit import bant_from_properties, disqualifier
    from services.score.state import BantState

    path = tmp_path / "scoring.yaml"
    path.write_text(
        "half_life: P1D\nthresholds: {warm: 1, hot: 2, mql_fit: 1, mql_engagement: 1}\n"
        "fit:\n  disqualify: {seniorities: [Student]}\n"
        "  bant: {authority_seniorities: [VP], budget: {properties: [budget], unmet_values: [None Yet]}}\n"
    )
    fit = load_rules(path).fit
    student = LeadProfile(lead_id="l", seniority="student")
    assert disqualifier(student, fit) == "seniority:student"
    vp = LeadProfile(lead_id="l", seniority="vp")
    bant = bant_from_properties(BantState(), {"budget": "None yet"}, vp, fit, 0.0)
    assert bant.authority is True
    assert bant.budget is False


def test_the_rules_digest_is_the_same_in_every_process() -> None:
    """Workers and restarts must name the same rules alike; a set's order follows each process's
    string hashing (PYTHONHASHSEED), so a digest of it as dumped differed from process to process."""
    import os
    import subprocess
    import sys

    code = (
        "from services.score.rules import DEFAULT_RULES_FILE, load_rules\n"
        "print(load_rules(DEFAULT_RULES_FILE).digest)"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2", "3")
    }
    assert digests == {load_rules(DEFAULT_RULES_FILE).digest}
