"""Consent proof: recorded once per event, pseudonymised (never deleted) on erasure, salted hashes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from schemas.privacy import PrivacyRecord, PrivacyRequestKind
from services.capture import consent
from services.capture.domain import lead_identity
from services.privacy.records import cascaded_erase, erasure_completed, retention_erase

SALT = "test-salt"
T0 = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
LEAD, _ = lead_identity("jane.doe@example.com", None)


def record(kind: PrivacyRequestKind, n: int, **fields: object) -> PrivacyRecord:
    return PrivacyRecord(
        event_id=f"{kind.value}-{n}",
        occurred_at=T0 + timedelta(minutes=n),
        lead_id=LEAD,
        kind=kind,
        **fields,
    )


def test_double_opt_in_is_proved_by_given_and_confirmed_in_order() -> None:
    given_ = record(PrivacyRequestKind.CONSENT_GIVEN, 1, consent_text_version="2026-01", ip_hash="h1")
    confirmed = record(PrivacyRequestKind.CONSENT_CONFIRMED, 2, consent_source="double_opt_in_link")
    proof = consent.record_consent(None, confirmed, SALT)
    proof = consent.record_consent(proof, given_, SALT)
    assert [e.kind for e in proof.events] == [
        PrivacyRequestKind.CONSENT_GIVEN,
        PrivacyRequestKind.CONSENT_CONFIRMED,
    ]
    assert proof.events[0].text_version == "2026-01" and proof.events[0].ip_hash == "h1"
    assert proof.lead_id == LEAD
    assert proof.subject == consent.subject_of(LEAD, SALT)


kinds = st.sampled_from(sorted(consent.PROOF_KINDS))


@given(st.lists(st.tuples(kinds, st.integers(0, 5)), max_size=20))
def test_recording_is_idempotent(script: list[tuple[PrivacyRequestKind, int]]) -> None:
    proof = None
    for kind, n in script:
        proof = consent.record_consent(proof, record(kind, n), SALT)
        again = consent.record_consent(proof, record(kind, n), SALT)
        assert again == proof
    if proof is not None:
        ids = [e.event_id for e in proof.events]
        assert len(ids) == len(set(ids))
        assert [e.at for e in proof.events] == sorted(e.at for e in proof.events)


def test_erasure_pseudonymises_and_keeps_the_proof() -> None:
    proof = consent.record_consent(None, record(PrivacyRequestKind.CONSENT_CONFIRMED, 1), SALT)
    erased_at = T0 + timedelta(days=1)
    kept = consent.pseudonymise(proof, erased_at)
    assert kept.lead_id is None and kept.pseudonymised_at == erased_at
    assert kept.events == proof.events
    assert LEAD not in kept.model_dump_json()
    assert consent.pseudonymise(kept, erased_at + timedelta(days=1)).pseudonymised_at == erased_at


def test_the_subject_hash_needs_the_salt() -> None:
    assert consent.subject_of(LEAD, SALT) == consent.subject_of(LEAD, SALT)
    assert consent.subject_of(LEAD, SALT) != consent.subject_of(LEAD, "another-salt")
    assert LEAD not in consent.subject_of(LEAD, SALT)
    assert consent.hash_ip("203.0.113.7", SALT) != consent.hash_ip("203.0.113.8", SALT)
    assert "203.0.113.7" not in (consent.hash_ip("203.0.113.7", SALT) or "")
    assert consent.hash_ip(None, SALT) is None


def test_other_kinds_are_not_consent_proof() -> None:
    proof = consent.record_consent(None, record(PrivacyRequestKind.ERASE, 1), SALT)
    assert proof.events == ()


def test_answers_have_stable_ids_and_no_personal_data() -> None:
    request = record(PrivacyRequestKind.ERASE, 1, requested_by="admin")
    done = erasure_completed(request, "enrich", {"leads_table": 1}, T0)
    assert done == erasure_completed(request, "enrich", {"leads_table": 1}, T0)
    assert done.event_id != erasure_completed(request, "route", {}, T0).event_id
    assert (done.in_reply_to, done.service, done.lead_id) == (request.event_id, "enrich", LEAD)
    assert len(done.event_id) <= 128
    cascade = cascaded_erase(request, "a-" + "0" * 24, T0)
    assert cascade.kind is PrivacyRequestKind.ERASE and cascade.lead_id == "a-" + "0" * 24
    assert cascade.event_id == cascaded_erase(request, "a-" + "0" * 24, T0).event_id
    assert retention_erase(LEAD, 5.0, T0).event_id == retention_erase(LEAD, 5.0, T0 + timedelta(1)).event_id
    assert retention_erase(LEAD, 5.0, T0).event_id != retention_erase(LEAD, 6.0, T0).event_id
