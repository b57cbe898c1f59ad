"""LinkedIn form responses mapped to a contact, and the contact fetches' retry schedule."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.capture import platforms
from services.capture.contact_fetch import contact_sender_id
from services.capture.fetch_queue import FetchJob
from services.runtime.backoff import retry_delay

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
NOTE = platforms.LinkedInNotification(
    leadGenFormResponse="urn:li:leadGenFormResponse:abc-4",
    leadGenForm="urn:li:versionedLeadGenForm:(urn:li:leadGenForm:42,3)",
    leadAction="CREATED",
)


def text(question: int, answer: str) -> dict[str, object]:
    return {"questionId": question, "answerDetails": {"textQuestionAnswer": {"answer": answer}}}


def form(*fields: tuple[int, str | None, str]) -> platforms.LinkedInForm:
    """Questions as (id, predefined field or None, name)."""
    return platforms.LinkedInForm.model_validate(
        {"content": {"questions": [{"questionId": i, "predefinedField": f, "name": n} for i, f, n in fields]}}
    )


def test_the_contact_links_the_anonymous_ad_lead() -> None:
    lead = platforms.LinkedInLead.model_validate(
        {"submittedAt": 1732181400000, "formResponse": {"answers": [text(1, "Ann@Example.com")]}}
    )
    contact = platforms.linkedin_contact_interaction(NOTE, lead, form((1, "EMAIL", "email")), NOW)
    ad_lead = platforms.linkedin_record(NOTE, NOW)
    assert contact.anonymous_id == ad_lead.anonymous_id == "linkedin:urn:li:leadGenFormResponse:abc-4"
    assert contact.contact.email == "ann@example.com"
    assert contact.lead_id != ad_lead.lead_id  # known by e-mail now; enrich stitches the two
    assert contact.occurred_at == datetime.fromtimestamp(1732181400, UTC)
    assert contact.properties["form_id"] == "42"
    assert contact.event_id.startswith("linkedin-contact-")


@pytest.mark.parametrize("order", [(1, 2), (2, 1)])
def test_a_work_address_wins_whichever_comes_first_and_the_other_is_kept(order: tuple[int, int]) -> None:
    answers = {1: text(1, "ann@gmail.com"), 2: text(2, "ann@example.com")}
    lead = platforms.LinkedInLead.model_validate({"formResponse": {"answers": [answers[i] for i in order]}})
    questions = form((1, "EMAIL", "email"), (2, "WORK_EMAIL", "workEmail"))
    contact = platforms.linkedin_contact_interaction(NOTE, lead, questions, NOW)
    assert contact.contact.email == "ann@example.com"
    assert contact.properties["answers"] == {"EMAIL": "ann@gmail.com"}


def test_custom_and_unknown_questions_choices_and_bad_values_go_to_properties() -> None:
    questions = platforms.LinkedInForm.model_validate(
        {
            "hiddenFields": [{"name": "utm", "value": "q4"}],
            "content": {
                "questions": [
                    {"questionId": 1, "predefinedField": "EMAIL"},
                    {
                        "questionId": 2,
                        "name": "Budget",
                        "questionDetails": {
                            "multipleChoiceQuestionDetails": {
                                "options": [
                                    {"id": 1, "text": {"localized": {"de_DE": "klein"}}},
                                    {"id": 2, "text": {"localized": {"de_DE": "groß"}}},
                                ]
                            }
                        },
                    },
                ]
            },
        }
    )
    lead = platforms.LinkedInLead.model_validate(
        {
            "testLead": True,
            "formResponse": {
                "answers": [
                    text(1, "not-an-email"),
                    {"questionId": 2, "answerDetails": {"multipleChoiceAnswer": {"options": [2, 9]}}},
                    text(7, "asked on a form version we were not given"),
                    text(8, "   "),
                ],
                "consentResponses": [{"consentId": 5, "accepted": False}],
            },
        }
    )
    contact = platforms.linkedin_contact_interaction(NOTE, lead, questions, NOW)
    assert contact.contact.email is None
    assert contact.properties["invalid_fields"] == {"email": "not-an-email"}
    assert contact.properties["answers"] == {
        "Budget": "groß, 9",
        "question_7": "asked on a form version we were not given",
    }
    assert contact.properties["hidden_fields"] == {"utm": "q4"}
    assert contact.properties["consents"] == {"5": False}
    assert contact.is_test
    assert contact.occurred_at == NOW  # no submittedAt: when it was received
    assert contact.lead_id == platforms.linkedin_record(NOTE, NOW).lead_id  # no usable e-mail


def test_without_the_form_every_answer_is_kept_by_question_id() -> None:
    lead = platforms.LinkedInLead.model_validate({"formResponse": {"answers": [text(3, "Ann")]}})
    contact = platforms.linkedin_contact_interaction(NOTE, lead, None, NOW)
    assert contact.properties["answers"] == {"question_3": "Ann"}


@pytest.mark.parametrize(
    ("urns", "expected"),
    [
        (("urn:li:versionedLeadGenForm:(urn:li:leadGenForm:7234246,1)",), "7234246"),
        ((None, "urn:li:leadGenForm:55"), "55"),
        (("urn:li:sponsoredAccount:1", None), None),
    ],
)
def test_form_ids_are_read_from_either_urn(urns: tuple[str | None, ...], expected: str | None) -> None:
    assert platforms.linkedin_form_id(*urns) == expected


def test_the_response_id_is_the_urns_last_part() -> None:
    assert platforms.linkedin_response_id("urn:li:leadGenFormResponse:abc-4") == "abc-4"


@given(st.integers(0, 200), st.floats(0.01, 100), st.floats(0.01, 10_000))
def test_retry_delays_double_from_the_first_and_never_pass_the_longest(
    attempts: int, first: float, longest: float
) -> None:
    delay = retry_delay(attempts, first, longest)
    assert delay == min(first if attempts <= 1 else first * 2 ** (attempts - 1), longest)
    assert delay <= retry_delay(attempts + 1, first, longest) <= max(2 * delay, longest)


def test_a_failed_job_counts_its_tries_and_keeps_its_identity() -> None:
    job = FetchJob(platform="linkedin", ref=NOTE.leadGenFormResponse, lead={}, queued_at=0.0)
    failed = job.failed("HTTP 503 " + "x" * 1000).failed("timeout")
    assert (failed.attempts, failed.last_error, failed.id) == (2, "timeout", job.id)
    assert len(job.failed("y" * 1000).last_error or "") == 500
    assert contact_sender_id(failed) == "linkedin-contact:urn:li:leadGenFormResponse:abc-4"
