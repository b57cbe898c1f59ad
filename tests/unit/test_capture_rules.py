"""Capture's pure rules: signatures, payload mapping, consent tokens, forms, JSON depth."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas import Interaction, InteractionIn, InteractionType, PrivacyRecord
from schemas.interaction import Source
from services.capture import consent, platforms
from services.capture.domain import json_depth, lead_identity, to_interaction
from services.capture.forms import (
    FormConfig,
    FormsConfigError,
    form_event,
    is_bot,
    load_forms,
    named_as_posted,
)
from services.runtime import consent_tokens
from services.runtime.errors import FieldProblem, field_problems

NOW = datetime(2026, 11, 21, 9, 30, tzinfo=UTC)
FORMS_YAML = Path(__file__).resolve().parents[2] / "config" / "forms.yaml"


@given(st.binary(max_size=500), st.text(min_size=1, max_size=40))
def test_meta_signature_accepts_exactly_the_right_hmac(body: bytes, secret: str) -> None:
    good = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert platforms.meta_signature_ok(body, good, secret)
    assert platforms.meta_signature_ok(body, good.upper().replace("SHA256=", "sha256="), secret)
    assert not platforms.meta_signature_ok(body + b"x", good, secret)
    assert not platforms.meta_signature_ok(body, good, secret + "x")
    assert not platforms.meta_signature_ok(body, None, secret)
    assert not platforms.meta_signature_ok(body, good.removeprefix("sha256="), secret)


@given(st.binary(max_size=500), st.text(min_size=1, max_size=40))
def test_linkedin_signature_covers_prefix_and_body(body: bytes, secret: str) -> None:
    good = hmac.new(secret.encode(), b"hmacsha256=" + body, hashlib.sha256).hexdigest()
    assert platforms.linkedin_signature_ok(body, good, secret)
    assert platforms.linkedin_signature_ok(body, "hmacsha256=" + good, secret)
    assert not platforms.linkedin_signature_ok(body + b" ", good, secret)
    assert not platforms.linkedin_signature_ok(body, "", secret)


def test_linkedin_challenge_response_is_hex_hmac_of_the_code() -> None:
    code = "890e4665-4dfe-4ab1-b689-ed553bceeed0"
    expected = hmac.new(b"s", code.encode(), hashlib.sha256).hexdigest()
    assert platforms.linkedin_challenge_response(code, "s") == expected


def test_meta_ignores_other_objects_and_fields() -> None:
    change = {"field": "feed", "value": {"leadgen_id": "1"}}
    assert platforms.meta_leads(
        platforms.MetaWebhook.model_validate({"object": "page", "entry": [{"changes": [change]}]})
    ) == ([], [])
    user = {"object": "user", "entry": [{"changes": [{"field": "leadgen", "value": {"leadgen_id": "1"}}]}]}
    assert platforms.meta_leads(platforms.MetaWebhook.model_validate(user)) == ([], [])
    numeric = {"object": "page", "entry": [{"changes": [{"field": "leadgen", "value": {"leadgen_id": 77}}]}]}
    assert platforms.meta_leads(platforms.MetaWebhook.model_validate(numeric))[0][0].leadgen_id == "77"


def test_a_meta_change_that_cannot_be_read_is_reported_and_the_others_kept() -> None:
    good = {"field": "leadgen", "value": {"leadgen_id": "1"}}
    bad = {"field": "leadgen", "value": {"leadgen_id": ["not", "an", "id"]}}
    delivery = {"object": "page", "entry": [{"changes": [good]}, {"changes": [good, bad]}]}
    leads, problems = platforms.meta_leads(platforms.MetaWebhook.model_validate(delivery))
    assert [lead.leadgen_id for lead in leads] == ["1", "1"]
    assert [problem["field"] for problem in problems] == ["entry.1.changes.1.value.leadgen_id"]


def test_meta_contact_links_the_anonymous_lead_and_keeps_bad_emails_out() -> None:
    lead = platforms.MetaLeadgen(leadgen_id="9", created_time=1732181400)
    first = platforms.meta_lead_interaction(lead, NOW)
    contact = platforms.meta_contact_interaction(lead, [{"name": "email", "values": ["not-an-email"]}], NOW)
    assert first.lead_id == contact.lead_id  # no usable email: same anonymous lead
    assert contact.contact.email is None
    assert contact.properties["invalid_fields"] == {"email": "not-an-email"}
    assert first.occurred_at == datetime.fromtimestamp(1732181400, UTC)


def _meta_contact(*answers: tuple[str, str]) -> Interaction:
    lead = platforms.MetaLeadgen(leadgen_id="9", created_time=1732181400)
    return platforms.meta_contact_interaction(lead, [{"name": n, "values": [v]} for n, v in answers], NOW)


def test_meta_work_email_and_phone_identify_a_b2b_lead() -> None:
    record = _meta_contact(
        ("full_name", "Grace Hopper"),
        ("work_email", "Grace@Example.com"),
        ("work_phone_number", "+15555550100"),
        ("company_name", "Example Inc"),
    )
    assert record.identity.value == "email"
    assert (record.contact.email, record.contact.phone) == ("grace@example.com", "+15555550100")
    assert record.properties["answers"] == {}


def test_meta_prefers_work_fields_and_keeps_the_personal_ones_among_the_answers() -> None:
    """As for LinkedIn: the work address is the one sales calls; the other is not lost."""
    for order in (1, -1):  # whichever Meta lists first
        answers = [
            ("email", "grace@home.example"),
            ("work_email", "grace@example.com"),
            ("phone_number", "+15555550111"),
            ("work_phone_number", "+15555550100"),
        ][::order]
        record = _meta_contact(*answers)
        assert (record.contact.email, record.contact.phone) == ("grace@example.com", "+15555550100")
        assert record.properties["answers"] == {"email": "grace@home.example", "phone_number": "+15555550111"}
    # a work question left blank does not hide the personal answer
    blank = _meta_contact(("work_email", " "), ("email", "grace@home.example"))
    assert blank.contact.email == "grace@home.example"


def test_a_mistyped_work_email_leaves_the_personal_one_to_identify_the_lead() -> None:
    """It used to leave the lead anonymous, a valid address in hand: never enriched or nurtured."""
    record = _meta_contact(("work_email", "grace@"), ("email", "grace@home.example"))
    assert (record.identity.value, record.contact.email) == ("email", "grace@home.example")
    assert record.properties["invalid_fields"] == {"email": "grace@"}
    google = _google_contact(("WORK_EMAIL", "max@"), ("EMAIL", "max@home.example"))
    assert (google.identity.value, google.contact.email) == ("email", "max@home.example")
    neither = _meta_contact(("work_email", "grace@"), ("email", "also-not-an-address"))
    assert neither.identity.value == "anonymous" and neither.contact.email is None


def _google_contact(*columns: tuple[str, str]) -> Interaction:
    data = [platforms.GoogleColumn(column_id=c, string_value=v) for c, v in columns]
    return platforms.google_interaction(platforms.GoogleLead(lead_id="L1", user_column_data=data), NOW)


def test_google_prefers_work_columns_whatever_their_order() -> None:
    for order in (1, -1):
        columns = [
            ("EMAIL", "max@home.example"),
            ("WORK_EMAIL", "max@example.de"),
            ("PHONE_NUMBER", "+4930111"),
            ("WORK_PHONE", "+4930222"),
        ][::order]
        record = _google_contact(*columns)
        assert (record.contact.email, record.contact.phone) == ("max@example.de", "+4930222")
        assert record.properties["answers"] == {"EMAIL": "max@home.example", "PHONE_NUMBER": "+4930111"}
    assert _google_contact(("WORK_EMAIL", " "), ("EMAIL", "max@home.example")).contact.email == (
        "max@home.example"
    )


@given(st.booleans())
def test_google_is_test_is_kept(is_test: bool) -> None:
    lead = platforms.GoogleLead(lead_id="L1", is_test=is_test, user_column_data=[])
    record = platforms.google_interaction(lead, NOW)
    assert record.is_test is is_test
    assert record.anonymous_id == "google:L1"


@given(st.text(min_size=1, max_size=128), st.text(min_size=1, max_size=128))
@example("L" * 128, "L" * 127)  # "google-lead-" + 117 characters or more overflowed the envelope
def test_every_valid_google_lead_id_gives_an_event_id_that_fits_and_repeats(lead_id: str, other: str) -> None:
    """Google retries a lead until it gets a 200: a lead id the payload model accepts must map, to the
    same event id on every retry and to another one for another lead."""

    def event_id(google_lead_id: str) -> str:
        return platforms.google_interaction(platforms.GoogleLead(lead_id=google_lead_id), NOW).event_id

    record = platforms.google_interaction(platforms.GoogleLead(lead_id=lead_id), NOW)
    assert len(record.event_id) <= 128
    assert event_id(lead_id) == record.event_id
    assert record.properties["google_lead_id"] == lead_id  # the platform's id stays readable
    assert other == lead_id or event_id(other) != record.event_id


def test_the_longest_meta_and_linkedin_ids_fit_the_envelope() -> None:
    """The same overflow checked on the other platforms, at the longest ids their models accept."""
    meta = platforms.MetaLeadgen(leadgen_id="9" * 64)
    records = [
        platforms.meta_lead_interaction(meta, NOW),
        platforms.meta_contact_interaction(meta, [{"name": "email", "values": ["a@example.com"]}], NOW),
    ]
    urn = "urn:li:leadGenFormResponse:" + "7" * (256 - len("urn:li:leadGenFormResponse:"))
    for action in ("CREATED", "DELETED"):
        note = platforms.LinkedInNotification(leadGenFormResponse=urn, leadAction=action)
        records.append(platforms.linkedin_record(note, NOW))
    created = platforms.LinkedInNotification(leadGenFormResponse=urn, leadAction="CREATED")
    records.append(platforms.linkedin_contact_interaction(created, platforms.LinkedInLead(), None, NOW))
    assert all(len(r.event_id) <= 128 and len(r.lead_id) <= 128 for r in records)


@pytest.mark.parametrize("action", ["DELETED", "deleted"])
def test_linkedin_deleted_is_an_erasure_request(action: str) -> None:
    note = platforms.LinkedInNotification(
        leadGenFormResponse="urn:li:leadGenFormResponse:1", leadAction=action
    )
    created = platforms.LinkedInNotification(
        leadGenFormResponse="urn:li:leadGenFormResponse:1", leadAction="CREATED"
    )
    record = platforms.linkedin_record(note, NOW)
    assert isinstance(record, PrivacyRecord)
    assert record.kind.value == "erase"
    assert record.lead_id == platforms.linkedin_record(created, NOW).lead_id
    assert platforms.linkedin_sender_id(note) != platforms.linkedin_sender_id(created)


@given(
    st.text(min_size=1, max_size=60).filter(lambda s: "|" not in s),  # lead ids are digests: no "|"
    st.text(min_size=1, max_size=64),  # a consent text version is the sender's: "2026-01|de" too
)
@example("e-1", "2026-01|de")
def test_consent_token_round_trips_and_detects_tampering(lead_id: str, version: str) -> None:
    token = consent_tokens.make_token(lead_id, version, NOW + timedelta(hours=1), "secret")
    claim = consent_tokens.read_token(token, "secret", NOW)
    assert (claim.lead_id, claim.text_version) == (lead_id, version)
    with pytest.raises(consent_tokens.TokenError, match="bad_signature"):
        consent_tokens.read_token(token, "other", NOW)
    with pytest.raises(consent_tokens.TokenError, match="expired"):
        consent_tokens.read_token(token, "secret", NOW + timedelta(hours=2))
    with pytest.raises(consent_tokens.TokenError):
        consent_tokens.read_token(token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB"), "secret", NOW)


def _consenting(event_id: str) -> Interaction:
    event = InteractionIn(
        event_id=event_id,
        type=InteractionType.FORM_SUBMIT,
        occurred_at=NOW,
        contact={"email": "ann@example.com"},
        consent={"marketing_email": True},
    )
    return to_interaction(event, received_at=NOW)


@given(st.text(min_size=1, max_size=128), st.text(min_size=1, max_size=128))
@example("x" * 128, "x" * 127)  # the longest ids: the suffix no longer fits
@example("x" * 120, "x" * 121)
def test_every_valid_event_id_gives_a_consent_record_id_that_fits_and_repeats(first: str, other: str) -> None:
    """Any event id the public API accepts grants its consent record (no 500), with the same id on a
    retry so the record dedupes, and another event's id for another event."""
    record = consent.consent_given(_consenting(first))
    assert record is not None and len(record.event_id) <= 128
    assert consent.consent_given(_consenting(first)) == record
    if len(first) <= 120:  # fits with the suffix: readable as before
        assert record.event_id == f"{first}-consent"
    if other != first:
        another = consent.consent_given(_consenting(other))
        assert another is not None and another.event_id != record.event_id


def test_shipped_forms_file_is_valid_and_errors_name_the_key(tmp_path: Path) -> None:
    assert {"contact-us", "demo"} <= set(load_forms(FORMS_YAML))
    bad = tmp_path / "forms.yaml"
    bad.write_text("forms:\n  x:\n    fields: {mail: e_mail}\n")
    with pytest.raises(FormsConfigError, match=r"forms\.yaml: forms\.x.*fields\.mail"):
        load_forms(bad)


def test_form_mapping_consent_and_honeypot() -> None:
    form = FormConfig(
        fields={"mail": "email"},
        consent_field="ok",
        consent_text_version="v1",
        hidden={"c": "utm_campaign"},
        honeypot="hp",
    )
    event = form_event("f", form, {"mail": "a@b.de", "ok": "on", "c": "camp", "note": "hi"}, NOW)
    assert (event.contact.email, event.source.utm_campaign, event.consent.marketing_email) == (
        "a@b.de",
        "camp",
        True,
    )
    assert event.properties == {"form_id": "f", "fields": {"note": "hi"}}
    assert form_event("f", form, {"mail": "a@b.de"}, NOW).consent.marketing_email is False
    assert is_bot(form, {"hp": "x"}) and not is_bot(form, {"hp": " "})


@given(
    st.recursive(
        st.integers(),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    )
)
def test_json_depth_matches_a_recursive_definition(value: object) -> None:
    def depth(v: object) -> int:
        children = list(v.values()) if isinstance(v, dict) else v if isinstance(v, list) else []
        return 1 + max((depth(c) for c in children), default=0) if isinstance(v, dict | list) else 0

    assert json_depth(value) == depth(value)


def test_a_forms_problems_are_named_by_the_forms_own_fields() -> None:
    """The page posted `work_email`; `contact.email` is the event's name for it, unknown to the page."""
    demo = load_forms(FORMS_YAML)["demo"]
    with pytest.raises(ValidationError) as raised:
        form_event("demo", demo, {"work_email": "not-an-address", "utm_campaign": "x" * 300}, NOW)
    named = named_as_posted(demo, field_problems(raised.value))
    assert {problem["field"] for problem in named} == {"work_email", "utm_campaign"}
    elsewhere: list[FieldProblem] = [{"field": "properties", "reason": "more than 50 keys"}]
    assert named_as_posted(demo, elsewhere) == elsewhere


def test_a_consent_token_is_read_from_its_one_encoding_only() -> None:
    """Base64 decoders skip stray characters and the unused low bits of the last one: each such copy
    of a link would be a new confirmation, and one could undo a withdrawal."""
    token = consent_tokens.make_token("e-1", "2026-01", NOW + timedelta(hours=1), "secret")
    payload, signature = token.split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(signature[-1])
    variants = [
        f"{payload}.{signature[:-1]}{alphabet[last ^ 1]}",  # an unused bit of the last character
        f"{payload}.{signature}=",
        f"{payload[:4]}!{payload[4:]}.{signature}",
        f"{payload}.{signature[:10]}\n{signature[10:]}",
    ]
    for variant in variants:
        with pytest.raises(consent_tokens.TokenError):
            consent_tokens.read_token(variant, "secret", NOW)
    assert consent_tokens.read_token(token, "secret", NOW).lead_id == "e-1"


def test_a_privacy_subject_of_whitespace_names_nobody() -> None:
    from services.capture.privacy_api import SubjectIn

    for blank in ({"email": "   "}, {"anonymous_id": " "}, {"email": " ", "anonymous_id": "a-1"}):
        subject = SubjectIn.model_validate(blank) if "a-1" in blank.values() else None
        if subject is None:
            with pytest.raises(ValidationError, match="exactly one"):
                SubjectIn.model_validate(blank)
        else:
            assert subject.email is None and subject.resolved() == lead_identity(None, "a-1")[0]
    assert SubjectIn(anonymous_id=" a-1 ").resolved() == lead_identity(None, "a-1")[0]


def test_a_consent_from_a_list_import_is_recorded_as_imported() -> None:
    """`leadpipe import` marks its rows (`import_line`): their consent's time is the import's, so
    nurture must be able to tell it from a sign-up (services/nurture/domain.py)."""
    live = consent.consent_given(_consenting("form-1"))
    imported = _consenting("import-1").model_copy(
        update={"properties": {consent.IMPORT_LINE: 2}, "source": Source(channel="event")}
    )
    record = consent.consent_given(imported)
    assert live is not None and live.consent_source == "web"
    assert record is not None and record.consent_source == "import:event"


def test_a_confirmation_records_when_its_link_expired() -> None:
    """Nurture tells the link of the last confirmation mail from an older one by its expiry."""
    expires = NOW + timedelta(days=7)
    token = consent_tokens.make_token("e-1", "v1", expires, "secret")
    claim = consent_tokens.read_token(token, "secret", NOW)
    record = consent.consent_confirmed(claim, token, NOW)
    assert record.link_expires_at == expires.replace(microsecond=0)
