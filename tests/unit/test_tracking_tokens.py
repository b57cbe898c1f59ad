"""Tracking tokens: what nurture signs, capture accepts unchanged, and nothing else."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.interaction import InteractionType
from services.capture.settings import CaptureSettings
from services.capture.tracking import tracking_event_id, tracking_interaction
from services.nurture.settings import NurtureSettings
from services.runtime.tracking_tokens import (
    MAX_TOKEN_CHARS,
    TokenError,
    TokenKind,
    TrackingClaim,
    TrackingTokens,
    _b64,
    _unb64,
)

TOKENS = TrackingTokens(b"test-secret")


def claim(kind: TokenKind = TokenKind.CLICK, **changes: object) -> TrackingClaim:
    values: dict[str, object] = {
        "kind": kind,
        "lead_id": "e-0123456789abcdef",
        "message_id": "cmd-1",
        "sequence": "welcome",
        "step": 1,
        "template_id": "welcome-2-best-content",
        "issued_at": 1_790_000_000,
        "url": "https://leadpipe.example/guides/speed-to-lead?utm_source=nurture" if kind == "c" else None,
    }
    return TrackingClaim.model_validate(values | changes)


text = st.text(st.characters(codec="utf-8"), max_size=60)
urls = st.builds(
    lambda scheme, host, path: f"{scheme}://{host}.example/{path}",
    st.sampled_from(["http", "https"]),
    st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True),
    st.text(st.characters(codec="ascii", exclude_characters="#?"), max_size=80),
)


def _claim(**values: object) -> TrackingClaim:
    """By field name (hypothesis would read the aliases from the model's signature)."""
    return TrackingClaim.model_validate(values)


claims = st.one_of(
    st.builds(
        _claim,
        kind=st.sampled_from([TokenKind.OPEN, TokenKind.UNSUBSCRIBE]),
        lead_id=st.text(min_size=1, max_size=128),
        message_id=st.text(min_size=1, max_size=128),
        sequence=text,
        step=st.integers(0, 10_000),
        template_id=text,
        issued_at=st.integers(0, 2**40),
    ),
    st.builds(
        _claim,
        kind=st.just(TokenKind.CLICK),
        lead_id=st.text(min_size=1, max_size=128),
        message_id=st.text(min_size=1, max_size=128),
        sequence=text,
        step=st.integers(0, 10_000),
        template_id=text,
        issued_at=st.integers(0, 2**40),
        url=urls,
    ),
)


@given(claims)
def test_what_is_signed_verifies_to_the_same_claim(original: TrackingClaim) -> None:
    token = TOKENS.sign(original)
    assert TOKENS.verify(token) == original
    assert len(token) <= MAX_TOKEN_CHARS


@given(claims, st.data())
def test_any_changed_character_is_refused(original: TrackingClaim, data: st.DataObject) -> None:
    token = TOKENS.sign(original)
    at = data.draw(st.integers(0, len(token) - 1), label="position")
    replacement = data.draw(st.sampled_from("AQgw-_.x9"), label="replacement")
    tampered = token[:at] + replacement + token[at + 1 :]
    if tampered == token:
        return
    try:
        verified = TOKENS.verify(tampered)
    except TokenError:
        return
    # base64's last character carries unused bits: a change there may decode to the same bytes.
    assert verified == original


def test_a_token_is_only_valid_under_its_own_secret() -> None:
    token = TOKENS.sign(claim())
    with pytest.raises(TokenError, match="bad_signature"):
        TrackingTokens(b"another-secret").verify(token)


def test_a_forged_payload_with_an_old_signature_is_refused() -> None:
    """Swap the target for another site, keep the signature: no open redirect."""
    token = TOKENS.sign(claim())
    payload, signature = token.split(".")
    forged = _unb64(payload).replace(b"leadpipe.example", b"evil.example")
    with pytest.raises(TokenError, match="bad_signature"):
        TOKENS.verify(f"{_b64(forged)}.{signature}")


@pytest.mark.parametrize(
    "token",
    ["", "abc", "a.b.c", "a b.c", "é.b", "x" * (MAX_TOKEN_CHARS + 1), "A.", ".A", "AAAAA.AAAA"],
)
def test_malformed_tokens_are_refused(token: str) -> None:
    with pytest.raises(TokenError) as refused:
        TOKENS.verify(token)
    assert str(refused.value) in ("malformed", "bad_signature")


def test_a_signed_payload_that_is_no_claim_is_malformed() -> None:
    """Only reachable with the secret, but the parser must still refuse it cleanly."""
    payload = b'{"k": "c", "l": "e-1"}'
    signature = TOKENS._signature(payload)
    with pytest.raises(TokenError, match="malformed"):
        TOKENS.verify(f"{_b64(payload)}.{_b64(signature)}")


@pytest.mark.parametrize("url", ["javascript:alert(1)", "//evil.example/", "ftp://x.example/f", "https:///x"])
def test_a_click_target_must_be_a_web_url(url: str) -> None:
    with pytest.raises(ValidationError, match="http"):
        claim(url=url)


def test_only_clicks_carry_a_target() -> None:
    with pytest.raises(ValidationError, match="only a click"):
        claim(TokenKind.OPEN, url="https://leadpipe.example/")
    with pytest.raises(ValidationError, match="only a click"):
        claim(TokenKind.CLICK, url=None)


def test_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        TrackingTokens(b"")


def test_expiry_counts_from_issue() -> None:
    issued = claim(issued_at=1000)
    assert not issued.is_expired(now=1000 + 60, max_age_seconds=60)
    assert issued.is_expired(now=1000 + 61, max_age_seconds=60)


def test_the_dev_secrets_of_nurture_and_capture_match() -> None:
    """`leadpipe dev` sets neither: links nurture signs must verify in capture out of the box."""
    assert (
        CaptureSettings().tracking_secret.get_secret_value()
        == NurtureSettings().tracking_secret.get_secret_value()
    )


def test_repeats_share_an_event_id_and_different_links_do_not() -> None:
    now, later = datetime(2026, 11, 21, 9, 30, tzinfo=UTC), datetime(2026, 12, 21, 9, 30, tzinfo=UTC)
    first_open = tracking_event_id(claim(TokenKind.OPEN), now)
    assert first_open == tracking_event_id(claim(TokenKind.OPEN, issued_at=1_790_000_999), later)
    assert first_open != tracking_event_id(claim(TokenKind.OPEN, message_id="cmd-2"), now)
    assert first_open != tracking_event_id(claim(TokenKind.CLICK), now)
    assert tracking_event_id(claim(), now) != tracking_event_id(
        claim(url="https://leadpipe.example/other"), now
    )


def test_an_unsubscribe_through_an_old_mail_on_another_day_is_a_new_event() -> None:
    """The page's POST and the mail client's one-click POST within the minute are one event; the same
    old mail's link followed again after the lead signed up again must not be dropped as a repeat."""
    unsubscribe = claim(TokenKind.UNSUBSCRIBE)
    at = datetime(2026, 11, 21, 9, 5, 10, tzinfo=UTC)
    first = tracking_event_id(unsubscribe, at)
    assert first == tracking_event_id(unsubscribe, at + timedelta(seconds=45))
    assert first != tracking_event_id(unsubscribe, at + timedelta(days=9))


def test_the_interaction_carries_the_lead_and_the_message_but_no_contact() -> None:
    now = datetime(2026, 11, 21, 9, 30, tzinfo=UTC)
    interaction = tracking_interaction(claim(), now)
    assert interaction.type is InteractionType.EMAIL_CLICK
    assert interaction.lead_id == "e-0123456789abcdef"
    assert interaction.occurred_at == now
    assert interaction.source.channel == "email"
    assert interaction.source.utm_campaign == "welcome"
    assert interaction.properties == {
        "command_id": "cmd-1",
        "sequence": "welcome",
        "step": 1,
        "template_id": "welcome-2-best-content",
        "url": "https://leadpipe.example/guides/speed-to-lead?utm_source=nurture",
    }
    assert interaction.contact.email is None
    assert tracking_interaction(claim(TokenKind.OPEN), now).type is InteractionType.EMAIL_OPEN
    assert tracking_interaction(claim(TokenKind.UNSUBSCRIBE), now).type is InteractionType.UNSUBSCRIBE
