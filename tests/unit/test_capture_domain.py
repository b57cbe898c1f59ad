"""Capture's identity rules: stable, PII-free lead ids."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import IdentityKind, InteractionIn
from services.capture.domain import lead_identity, normalise_email, to_interaction

local_parts = st.from_regex(r"[a-zA-Z0-9._%+-]{1,20}", fullmatch=True)
domains = st.from_regex(r"[a-zA-Z0-9-]{1,15}\.(com|de|io|co\.uk)", fullmatch=True)


@given(local_parts, domains, st.sampled_from(["", " ", "  ", "\t"]), st.sampled_from(["", " ", "\n"]))
def test_same_mailbox_with_other_case_or_spaces_is_the_same_lead(
    local: str, domain: str, before: str, after: str
) -> None:
    email = f"{local}@{domain}"
    messy = before + email.swapcase() + after
    assert lead_identity(messy, None) == lead_identity(email.lower(), None)


@given(local_parts, domains)
def test_lead_id_does_not_contain_the_email(local: str, domain: str) -> None:
    lead_id, kind = lead_identity(f"{local}@{domain}", "anon-1")
    assert kind is IdentityKind.EMAIL
    assert lead_id.startswith("e-")
    assert "@" not in lead_id and domain.lower() not in lead_id
    # the id is 24 hex digits of a hash: a short all-hex local part ("0ff") turns up in one by
    # chance (found by hypothesis in CI); eight or more characters will not (17 in 16**8)
    assert local.lower() not in lead_id or len(local) < 8


def test_anonymous_id_is_used_only_without_an_email() -> None:
    anon, kind = lead_identity(None, " anon-7f3a ")
    assert kind is IdentityKind.ANONYMOUS
    assert anon == lead_identity("", "anon-7f3a")[0]
    assert anon.startswith("a-")
    assert lead_identity("jane@example.com", "anon-7f3a")[0] != anon


def test_no_identity_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"anonymous_id or contact\.email"):
        lead_identity("  ", None)


def test_to_interaction_normalises_and_keeps_the_senders_event_id() -> None:
    event = InteractionIn.model_validate(
        {
            "event_id": "sender-42",
            "type": "form_submit",
            "occurred_at": "2026-11-21T09:30:00Z",
            "contact": {"email": " Jane.Doe@Example.COM"},
        }
    )
    received = datetime(2026, 11, 21, 9, 30, 1, tzinfo=UTC)
    record = to_interaction(event, received_at=received)
    assert record.event_id == "sender-42"
    assert record.contact.email == normalise_email(" Jane.Doe@Example.COM") == "jane.doe@example.com"
    assert record.identity is IdentityKind.EMAIL
    assert record.received_at == received


def test_to_interaction_generates_an_event_id_when_absent() -> None:
    event = InteractionIn.model_validate(
        {"type": "page_view", "occurred_at": "2026-11-21T09:30:00Z", "anonymous_id": "anon-1"}
    )
    record = to_interaction(event, received_at=datetime.now(UTC), make_event_id=lambda: "generated")
    assert record.event_id == "generated"
    assert record.identity is IdentityKind.ANONYMOUS
