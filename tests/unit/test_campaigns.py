"""config/campaigns.yaml: validation with clear errors, bounded labels, and the funnel metrics."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from schemas.interaction import Source
from schemas.profile import LeadProfile
from schemas.stage import LifecycleStage, Scores, StageChange, StageKind, Temperature, Trigger
from services.runtime.campaigns import (
    DEFAULT_CAMPAIGNS_FILE,
    NONE,
    OTHER,
    CampaignsConfig,
    CampaignsError,
    load_campaigns,
    parse_campaigns,
)
from services.score.metrics import score_metrics

VALID: dict[str, Any] = {
    "channels": ["web", "meta_ads"],
    "campaigns": [
        {
            "id": "spring-launch",
            "channel": "web",
            "cost": 1200,
            "currency": "EUR",
            "period": {"start": "2026-03-01", "end": "2026-05-31"},
        }
    ],
}


def _with(**changes: Any) -> dict[str, Any]:
    campaign = {**VALID["campaigns"][0], **changes}
    return {**VALID, "campaigns": [campaign]}


def test_the_shipped_file_is_valid_and_covers_the_demo_campaigns() -> None:
    from services.devstack.demo import CAMPAIGNS, CHANNELS

    config = load_campaigns(DEFAULT_CAMPAIGNS_FILE)
    assert {c.id for c in config.campaigns} == set(CAMPAIGNS)
    assert {channel for channel, _, _ in CHANNELS} <= set(config.channels)


def test_the_file_can_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "campaigns.yaml"
    path.write_text(yaml.safe_dump(VALID))
    monkeypatch.setenv("LEADPIPE_CAMPAIGNS_FILE", str(path))
    assert [c.id for c in load_campaigns().campaigns] == ["spring-launch"]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (_with(channel="tv"), "campaign 'spring-launch': channel 'tv' is not in channels"),
        (_with(cost=-1), "campaigns.0.cost: Input should be greater than or equal to 0"),
        (_with(currency="euro"), "campaigns.0.currency: String should match pattern"),
        (_with(period={"start": "2026-05-01", "end": "2026-04-01"}), "end (2026-04-01) is before start"),
        (_with(id="Spring Launch!"), "campaigns.0.id: Value error, use lower-case letters"),
        (_with(id="other"), "'other' is reserved"),
        ({**VALID, "campaigns": VALID["campaigns"] * 2}, "campaign ids must be unique: spring-launch"),
        ({**VALID, "channels": []}, "channels: Tuple should have at least 1 item"),
        (_with(budget=3), "campaigns.0.budget: Extra inputs are not permitted"),
    ],
)
def test_mistakes_are_named(data: dict[str, Any], expected: str) -> None:
    with pytest.raises(CampaignsError) as raised:
        parse_campaigns(data, "campaigns.yaml")
    assert str(raised.value).startswith("campaigns.yaml: ")
    assert expected in str(raised.value)


def test_unreadable_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(CampaignsError, match="cannot read"):
        load_campaigns(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("channels: [web\n")
    with pytest.raises(CampaignsError, match="not valid YAML"):
        load_campaigns(broken)


def test_labels_are_listed_values_other_or_none() -> None:
    config = parse_campaigns(VALID)
    assert config.channel_label("Web ") == "web"
    assert config.channel_label("tiktok") == OTHER
    assert config.channel_label(None) == NONE
    assert config.campaign_label("SPRING-LAUNCH") == "spring-launch"
    assert config.campaign_label("black-friday") == OTHER
    assert config.campaign_label(" ") == NONE


@given(st.one_of(st.none(), st.text(max_size=80)))
def test_label_values_stay_bounded(value: str | None) -> None:
    config = parse_campaigns(VALID)
    assert config.channel_label(value) in {*config.channels, OTHER, NONE}
    assert config.campaign_label(value) in {*(c.id for c in config.campaigns), OTHER, NONE}


def _change(kind: StageKind, from_stage: str, to_stage: str, source: Source) -> StageChange:
    now = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
    return StageChange(
        event_id=f"{kind}-{to_stage}",
        occurred_at=now,
        lead_id="e-1",
        kind=kind,
        from_stage=from_stage,
        to_stage=to_stage,
        temperature=Temperature.WARM,
        lifecycle=LifecycleStage(to_stage) if kind == StageKind.LIFECYCLE else LifecycleStage.IQL,
        scores=Scores(fit=10, engagement=5, total=15),
        trigger=Trigger(event_id="t-1", type="form_submit", occurred_at=now),
        profile=LeadProfile(lead_id="e-1"),
        source=source,
    )


def test_funnel_counts_lifecycle_entries_and_new_leads_by_bounded_source() -> None:
    registry = CollectorRegistry()
    metrics = score_metrics(registry, parse_campaigns(VALID))
    listed = Source(channel="web", utm_campaign="spring-launch")
    unlisted = Source(channel="tiktok", utm_campaign="jane.doe@example.com")
    metrics.observe_stage_change(_change(StageKind.LIFECYCLE, "raw", "iql", listed))
    metrics.observe_stage_change(_change(StageKind.LIFECYCLE, "iql", "mql", listed))
    metrics.observe_stage_change(_change(StageKind.LIFECYCLE, "raw", "mql", unlisted))
    metrics.observe_stage_change(_change(StageKind.TEMPERATURE, "cold", "warm", listed))

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    entries = "leadpipe_funnel_stage_entries_total"
    assert value(entries, stage="iql", channel="web", campaign="spring-launch") == 1
    assert value(entries, stage="mql", channel="web", campaign="spring-launch") == 1
    assert value(entries, stage="mql", channel="other", campaign="other") == 1
    captured = "leadpipe_funnel_leads_captured_total"
    assert value(captured, channel="web", campaign="spring-launch") == 1
    assert value(captured, channel="other", campaign="other") == 1
    assert value("leadpipe_score_stage_changes_total", kind="temperature", from_stage="cold", to_stage="warm")
    assert value("leadpipe_score_event_to_stage_change_seconds_count") == 4
    assert value("leadpipe_campaign_cost", campaign="spring-launch", channel="web", currency="EUR") == 1200
    exposition = generate_latest(registry)
    assert b"example.com" not in exposition and b"tiktok" not in exposition


def test_config_is_frozen() -> None:
    config: CampaignsConfig = parse_campaigns(VALID)
    with pytest.raises(ValueError):
        config.campaigns[0].cost = 0  # type: ignore[misc]
