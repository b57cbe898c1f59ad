"""The pure rules of CRM webhook delivery: signatures, what an answer means, when to try again."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given
from hypothesis import strategies as st

from services.devstack.crm_sink import make_app
from services.route.config import ConfigError, RoutingConfig, parse_config
from services.route.crm import (
    SIGNATURE_HEADER,
    Verdict,
    next_delay,
    retry_after,
    sign,
    team_secrets,
    verdict,
    verify,
)
from services.route.settings import RouteSettings
from services.runtime.backoff import retry_delay

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
secrets = st.text(min_size=1, max_size=40).filter(lambda s: "," not in s)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, Verdict.DELIVERED),
        (202, Verdict.DELIVERED),
        (204, Verdict.DELIVERED),
        (301, Verdict.REFUSED),  # redirects are not followed
        (307, Verdict.REFUSED),
        (400, Verdict.REFUSED),
        (401, Verdict.REFUSED),
        (404, Verdict.REFUSED),
        (410, Verdict.REFUSED),
        (422, Verdict.REFUSED),
        (408, Verdict.RETRY),
        (425, Verdict.RETRY),
        (429, Verdict.RETRY),
        (500, Verdict.RETRY),
        (502, Verdict.RETRY),
        (503, Verdict.RETRY),
    ],
)
def test_what_an_answer_means(status: int, expected: Verdict) -> None:
    assert verdict(status) is expected


@given(secret=secrets, body=st.binary(max_size=2000), stamp=st.integers(0, 4_000_000_000))
def test_a_signed_body_verifies_and_nothing_else_does(secret: str, body: bytes, stamp: int) -> None:
    header = sign([secret], stamp, body)
    assert verify(secret, header, body, now=stamp)
    assert verify(secret, header, body, now=stamp + 300)
    assert not verify(secret, header, body, now=stamp + 301)  # an old request replayed
    assert not verify(secret, header, body + b" ", now=stamp)
    assert not verify(secret + "x", header, body, now=stamp)
    forged = header.replace(f"t={stamp}", f"t={stamp + 1}")  # a newer time on an old signature
    assert not verify(secret, forged, body, now=stamp)


@given(new=secrets, old=secrets, body=st.binary(max_size=200))
def test_while_a_secret_is_rotated_either_secret_verifies(new: str, old: str, body: bytes) -> None:
    header = sign([new, old], 1_800_000_000, body)
    assert header.count("v1=") == 2
    assert verify(new, header, body, now=1_800_000_000)
    assert verify(old, header, body, now=1_800_000_000)


def test_the_signature_is_hmac_sha256_of_time_dot_body() -> None:
    # Computed apart: printf '1800000000.{"a":1}' | openssl dgst -sha256 -hmac whsec
    expected = "t=1800000000,v1=adf19a16865985b0891b0e7e4f6770e17d6bdd6462d897848f5adb661c4381bb"
    assert sign(["whsec"], 1_800_000_000, b'{"a":1}') == expected


@pytest.mark.parametrize("header", ["", "v1=abc", "t=x,v1=abc", "t=1,t=1,v1=abc", "t=-5,v1=abc"])
def test_a_malformed_header_does_not_verify(header: str) -> None:
    assert not verify("secret", header, b"{}", now=1)


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert retry_after("120", NOW) == 120
    assert retry_after(" 7 ", NOW) == 7
    assert retry_after(format_datetime(NOW + timedelta(seconds=90), usegmt=True), NOW) == 90
    assert retry_after(format_datetime(NOW - timedelta(seconds=90), usegmt=True), NOW) == 0
    assert retry_after(None, NOW) is None
    assert retry_after("soon", NOW) is None
    assert retry_after("Sat, 06 Dec 2026 12:00:00 -0000", NOW) is None  # no zone: unreadable


@given(
    attempts=st.integers(1, 40),
    first=st.floats(0.1, 60),
    longest=st.floats(1, 3600),
    asked=st.none() | st.floats(0, 100_000),
)
def test_the_next_try_waits_the_back_off_or_what_was_asked_never_past_the_longest(
    attempts: int, first: float, longest: float, asked: float | None
) -> None:
    delay = next_delay(attempts, first, longest, asked)
    backoff = retry_delay(attempts, first, longest)
    assert delay <= max(longest, backoff)
    assert delay >= min(backoff, longest)
    if asked is not None and asked <= longest:
        assert delay >= asked


def test_a_webhook_url_must_be_http(tmp_path: Path) -> None:
    data = {"teams": [{"name": "emea", "crm_webhook_url": "ftp://crm.example"}], "fallback_team": "emea"}
    with pytest.raises(ConfigError, match=r"teams\.0\.crm_webhook_url.*http"):
        parse_config(yaml.safe_load(yaml.safe_dump(data)))
    ok = parse_config(
        {"teams": [{"name": "emea", "crm_webhook_url": "https://crm.example/h"}], "fallback_team": "emea"}
    )
    assert ok.team("emea").crm_webhook_url == "https://crm.example/h"


def test_secrets_are_split_and_the_lease_outlasts_two_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROUTE_CRM_WEBHOOK_SECRET", " new , old ")
    assert RouteSettings().crm_secrets == ("new", "old")
    with pytest.raises(ValueError, match=r"crm_lease_seconds .* twice crm_timeout_seconds"):
        RouteSettings(crm_timeout_seconds=10, crm_lease_seconds=15)


async def test_the_dev_stack_s_crm_webhook_takes_signed_hand_offs_only() -> None:
    handoff = {
        "handoff_id": "h1",
        "lead_id": "e-1",
        "assignee": {"team": "emea", "rep_id": None},
        "sla": {"tier": "hot", "due_at": "2026-12-06T12:05:00Z"},
    }
    body = json.dumps(handoff).encode()
    async with TestClient(TestServer(make_app("dev-secret"))) as client:
        for secret, status in (("dev-secret", 204), ("other", 401)):
            signed = {SIGNATURE_HEADER: sign([secret], int(time.time()), body)}
            answer = await client.post("/hooks/handoffs", data=body, headers=signed)
            assert answer.status == status


def _config(*teams: dict[str, object]) -> RoutingConfig:
    return parse_config({"teams": list(teams), "fallback_team": "queue"})


def test_each_webhook_team_signs_with_its_own_secret_or_the_default() -> None:
    config = _config(
        {"name": "emea", "crm_webhook_url": "https://hooks.example/emea"},
        {"name": "na", "crm_webhook_url": "https://crm.na.example/h", "crm_webhook_secret_env": "NA_CRM"},
        {"name": "queue"},  # no webhook: nothing to sign
    )
    secrets = team_secrets(config, ("default",), {"NA_CRM": " new, old "})
    assert secrets == {"emea": ("default",), "na": ("new", "old")}
    with pytest.raises(ValueError, match=r"team 'na' .* its crm_webhook_secret_env, NA_CRM, is not set"):
        team_secrets(config, ("default",), {})
    with pytest.raises(ValueError, match=r"team 'emea' .* ROUTE_CRM_WEBHOOK_SECRET is not set"):
        team_secrets(config, (), {"NA_CRM": "new"})
    assert team_secrets(_config({"name": "queue"}), (), {}) == {}


@pytest.mark.parametrize(
    ("team", "problem"),
    [
        ({"crm_webhook_secret_env": "NA_CRM"}, "crm_webhook_secret_env is set but crm_webhook_url is not"),
        (
            {"crm_webhook_url": "https://h.example", "crm_webhook_secret_env": "na-crm"},
            "crm_webhook_secret_env",
        ),
    ],
)
def test_a_secret_variable_needs_a_webhook_and_a_variable_s_name(team: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        _config({"name": "queue", **team})


@pytest.mark.parametrize("value", ["²", "1²", "\u0663", "\uff11\uff12"])
def test_retry_after_with_non_ascii_digits_is_unreadable_not_an_error(value: str) -> None:
    """`str.isdigit` says yes to '²' and other digits float() and int() refuse."""
    assert retry_after(value, NOW) is None
    assert not verify("secret", f"t={value},v1=00", b"{}", now=1)
