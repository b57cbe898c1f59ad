"""Capture's intake rules: published event ids per API client, the sender's clock, webhook signatures
and the e-mail check of the withdrawal and privacy bodies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from services.capture import domain, platforms
from services.capture.api_models import WithdrawIn
from services.capture.auth import client_of
from services.capture.privacy_api import EraseIn, SubjectIn
from services.runtime.errors import field_problems

NOW = datetime(2026, 11, 21, 9, 30, tzinfo=UTC)
HOUR = timedelta(hours=1)
CLIENT_A, CLIENT_B = client_of("key-a"), client_of("key-b")
SENDER_IDS = st.text(min_size=1, max_size=128)


@given(SENDER_IDS, SENDER_IDS)
def test_published_event_ids_fit_repeat_and_never_mix_clients_or_ids(first: str, other: str) -> None:
    """Deterministic (a client's retry publishes the same id), within the envelope's 128 characters,
    different for another client's same id and for the same client's other id."""
    published = domain.published_event_id(first, CLIENT_A)
    assert len(published) <= 128
    assert published == domain.published_event_id(first, CLIENT_A)
    assert published != domain.published_event_id(first, CLIENT_B)
    assert other == first or domain.published_event_id(other, CLIENT_A) != published


def test_published_event_id_is_readable_while_it_fits_and_kept_without_a_client() -> None:
    assert domain.published_event_id("ev-42", CLIENT_A) == f"{CLIENT_A}:ev-42"
    long = domain.published_event_id("x" * 128, CLIENT_A)
    assert long.startswith(f"{CLIENT_A}#") and len(long) <= 128
    assert domain.published_event_id("ev-42", None) == "ev-42"


def test_occurred_at_may_run_ahead_by_the_tolerance_only() -> None:
    assert domain.clock_ahead_problem(NOW + HOUR, NOW, HOUR) is None
    assert domain.clock_ahead_problem(NOW - timedelta(days=3650), NOW, HOUR) is None  # old leads
    reason = domain.clock_ahead_problem(NOW + timedelta(days=36 * 365, hours=3), NOW, HOUR)
    assert reason == "13140 d 3 h after capture received it; a sender's clock may run at most 1 h ahead"
    assert domain.clock_ahead_problem(NOW + HOUR + timedelta(seconds=1), NOW, HOUR) is not None


def test_a_platforms_future_time_is_replaced_by_the_receive_time_and_kept() -> None:
    """An ad lead is never refused for a bad field: the lead is published at its receive time."""
    future = int((NOW + timedelta(days=365 * 36)).timestamp())
    lead = platforms.MetaLeadgen(leadgen_id="4471", created_time=future)
    record = platforms.meta_lead_interaction(lead, NOW, max_ahead=HOUR)
    assert record.occurred_at == NOW
    assert record.properties["invalid_fields"] == {"created_time": future}
    contact = platforms.meta_contact_interaction(
        lead, [{"name": "email", "values": ["a@example.com"]}], NOW, max_ahead=HOUR
    )
    assert contact.occurred_at == NOW and contact.contact.email == "a@example.com"
    note = platforms.LinkedInNotification(
        leadGenFormResponse="urn:li:leadGenFormResponse:1", leadAction="CREATED", occuredAt=future * 1000
    )
    assert platforms.linkedin_record(note, NOW, max_ahead=HOUR).occurred_at == NOW
    late = platforms.LinkedInLead(submittedAt=future * 1000)
    assert platforms.linkedin_contact_interaction(note, late, None, NOW, max_ahead=HOUR).occurred_at == NOW
    on_time = platforms.MetaLeadgen(leadgen_id="4472", created_time=int(NOW.timestamp()) - 60)
    kept = platforms.meta_lead_interaction(on_time, NOW, max_ahead=HOUR)
    assert kept.occurred_at == NOW - timedelta(seconds=60) and "invalid_fields" not in kept.properties


@pytest.mark.parametrize("max_ahead", [HOUR, None])
def test_a_platform_time_past_the_calendar_is_replaced_not_an_error(max_ahead: timedelta | None) -> None:
    """Milliseconds sent as seconds (year 58904): `fromtimestamp` raised, the delivery was answered
    500, and the platform sent it, and its lead, again for ever."""
    millis = int(NOW.timestamp() * 1000)
    lead = platforms.MetaLeadgen(leadgen_id="4473", created_time=millis)
    record = platforms.meta_lead_interaction(lead, NOW, max_ahead=max_ahead)
    assert record.occurred_at == NOW and record.properties["invalid_fields"] == {"created_time": millis}
    note = platforms.LinkedInNotification(
        leadGenFormResponse="urn:li:leadGenFormResponse:2", leadAction="CREATED", occuredAt=millis * 1000
    )
    assert platforms.linkedin_record(note, NOW, max_ahead=max_ahead).occurred_at == NOW
    late = platforms.LinkedInLead(submittedAt=millis * 1000)
    assert (
        platforms.linkedin_contact_interaction(note, late, None, NOW, max_ahead=max_ahead).occurred_at == NOW
    )


@pytest.mark.parametrize("header", ["sha256=\u00e9", "sha256=\u00c3\u00a9", "sha256=\udce9", "\u2603"])
def test_a_signature_header_with_non_ascii_characters_is_wrong_not_an_error(header: str) -> None:
    assert platforms.meta_signature_ok(b"{}", header, "secret") is False
    assert platforms.linkedin_signature_ok(b"{}", header.removeprefix("sha256="), "secret") is False
    assert platforms.linkedin_signature_ok(b"{}", "hmacsha256=" + header, "secret") is False


def test_a_right_signature_still_passes_in_any_case() -> None:
    signature = platforms._hmac_hex("secret", b"{}")
    assert platforms.meta_signature_ok(b"{}", "sha256=" + signature.upper(), "secret")
    assert platforms.linkedin_signature_ok(b"{}", platforms._hmac_hex("secret", b"hmacsha256={}"), "secret")


@pytest.mark.parametrize("model", [WithdrawIn, SubjectIn, EraseIn])
@pytest.mark.parametrize("email", ["jane.doe@example,com", "jane.doe at example.com"])
def test_withdrawal_and_privacy_subjects_check_the_email_as_events_do(model: type, email: str) -> None:
    with pytest.raises(ValidationError) as refused:
        model.model_validate({"email": email})
    (problem,) = field_problems(refused.value)
    assert problem["field"] == "email"
    assert "not a valid email address" in problem["reason"]
    assert model.model_validate({"email": " Jane.Doe@Example.com "}).email is not None


def test_a_null_answer_object_from_linkedin_is_no_answer() -> None:
    """`"textQuestionAnswer": null` raised AttributeError while mapping the answers."""
    note = platforms.LinkedInNotification(
        leadGenFormResponse="urn:li:leadGenFormResponse:1", leadAction="CREATED"
    )
    lead = platforms.LinkedInLead.model_validate(
        {
            "formResponse": {
                "answers": [
                    {"questionId": 1, "answerDetails": {"textQuestionAnswer": None}},
                    {"questionId": 2, "answerDetails": {"multipleChoiceAnswer": None}},
                    {"questionId": 3, "answerDetails": {"textQuestionAnswer": {"answer": "a@example.com"}}},
                ]
            }
        }
    )
    contact = platforms.linkedin_contact_interaction(note, lead, None, NOW)
    assert contact.properties["answers"] == {"question_3": "a@example.com"}
