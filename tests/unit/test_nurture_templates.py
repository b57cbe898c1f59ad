"""Nurture's e-mail content: a template per configured step, safe personalisation, every link tracked."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from yarl import URL

from schemas.nurture import NurtureCommand
from services.nurture.mailer import Mailer, TrackingLinks, build_confirmation, build_message
from services.nurture.rules import load_rules
from services.nurture.settings import NurtureSettings
from services.nurture.templates import (
    CONFIRM_LINK,
    DEFAULT_TEMPLATE,
    EmailTemplate,
    TemplateError,
    load_template,
    load_templates,
    render,
)
from services.runtime.consent_tokens import read_token
from services.runtime.tracking_tokens import TokenKind, TrackingTokens

LIBRARY = load_templates()
CONFIRMATION_TEMPLATE = load_rules(NurtureSettings().rules_file).double_opt_in.template_id
TOKENS = TrackingTokens(b"test-secret")
LINKS = TrackingLinks("https://track.example/", TOKENS)
HREF = re.compile(r'(?:href|src)="([^"]+)"')


def command(template_id: str = "welcome-1-hello", **personalisation: str | None) -> NurtureCommand:
    at = datetime(2026, 11, 21, 9, 30, tzinfo=UTC)
    return NurtureCommand(
        event_id="cmd-7",
        occurred_at=at,
        lead_id="e-abc",
        sequence="welcome",
        step=0,
        template_id=template_id,
        recipient="jane@example.com",
        personalisation=personalisation,
        send_after=at,
    )


def test_every_configured_step_has_its_own_template() -> None:
    rules = load_rules(NurtureSettings().rules_file)
    used = {step.template_id for sequence in rules.sequences.values() for step in sequence.steps}
    used.add(rules.double_opt_in.template_id)
    assert used - LIBRARY.ids == set()


def test_unknown_template_ids_fall_back_to_the_default() -> None:
    assert LIBRARY.get("no-such-template") is None
    assert LIBRARY.get_or_default("no-such-template") == LIBRARY.get_or_default(DEFAULT_TEMPLATE)


@pytest.mark.parametrize("template_id", sorted(LIBRARY.ids | {DEFAULT_TEMPLATE}))
def test_every_template_renders_with_and_without_personalisation(template_id: str) -> None:
    template = LIBRARY.get_or_default(template_id)
    for values in ({}, {"first_name": "Jane", "last_name": "Doe", "company": "Example GmbH"}):
        mail = render(template, values, lambda url: f"tracked:{url}")
        assert "$" not in mail.subject + mail.text + mail.html
        links_to = CONFIRM_LINK if template_id == CONFIRMATION_TEMPLATE else "https://leadpipe.example/"
        assert f"tracked:{links_to}" in mail.text
    assert "Hi there," in render(template, {}, str).text


def confirmation_command(version: str = "v3") -> NurtureCommand:
    return command(CONFIRMATION_TEMPLATE, first_name="Jane").model_copy(
        update={
            "purpose": "consent_request",
            "personalisation": {"first_name": "Jane", "consent_text_version": version},
        }
    )


def test_the_confirmation_mail_links_to_capture_with_a_token_capture_accepts_and_tracks_nothing() -> None:
    settings = NurtureSettings(
        consent_confirm_url="https://in.example/v1/consent/confirm", consent_secret="s3"
    )
    mailer = Mailer(settings, ledger=None, transport=None, metrics=None)  # type: ignore[arg-type]
    sent = confirmation_command()
    message = mailer.message(sent)
    html_part, text_part = message.get_body(("html",)), message.get_body(("plain",))
    assert html_part is not None and text_part is not None
    urls = set(HREF.findall(html_part.get_content()))
    [url] = urls  # the inline link and the button: the same confirmation link, nothing else
    assert url.startswith("https://in.example/v1/consent/confirm?token=")
    assert url in text_part.get_content()
    claim = read_token(url.split("token=", 1)[1], "s3", sent.send_after)
    assert (claim.lead_id, claim.text_version) == ("e-abc", "v3")
    week = sent.send_after.timestamp() + settings.consent_token_ttl_seconds
    assert claim.expires == int(week)
    assert message["List-Unsubscribe"] is None and "track" not in html_part.get_content()
    assert mailer.message(sent).get_body(("html",)).get_content() == html_part.get_content()  # type: ignore[union-attr]


def test_a_confirmation_template_without_the_link_still_gets_it() -> None:
    bare = EmailTemplate(subject="Confirm", paragraphs=("Hi $first_name,",))
    message = build_confirmation(
        confirmation_command(), "x@leadpipe.example", "https://in.example/c?token=t", bare
    )
    text_part = message.get_body(("plain",))
    assert text_part is not None and "https://in.example/c?token=t" in text_part.get_content()


def test_every_link_in_the_message_is_tracked_and_names_the_lead() -> None:
    message = build_message(
        command(first_name="Jane"), "x@leadpipe.example", LINKS, LIBRARY.get_or_default("welcome-1-hello")
    )
    assert isinstance(message, EmailMessage)
    html_part, text_part = message.get_body(("html",)), message.get_body(("plain",))
    assert html_part is not None and text_part is not None
    urls = HREF.findall(html_part.get_content())
    assert len(urls) >= 4  # inline link, button, unsubscribe, pixel
    kinds = []
    for url in urls:
        assert url.startswith("https://track.example/t/"), url
        claim = TOKENS.verify(url.rsplit("/", 1)[1])
        assert (claim.lead_id, claim.message_id, claim.template_id) == ("e-abc", "cmd-7", "welcome-1-hello")
        kinds.append(claim.kind)
    assert kinds.count(TokenKind.OPEN) == 1 and kinds[-1] is TokenKind.OPEN
    assert TokenKind.UNSUBSCRIBE in kinds
    assert {TOKENS.verify(u.rsplit("/", 1)[1]).url for u in urls if "/t/c/" in u} == {
        "https://leadpipe.example/tour"
    }
    assert message["List-Unsubscribe"] == f"<{next(u for u in urls if '/t/u/' in u)}>"
    assert "https://leadpipe.example" not in text_part.get_content()  # only tracked links
    assert message["Subject"] == "Welcome to Leadpipe"


@given(st.text(max_size=80), st.text(max_size=80))
def test_personalisation_never_adds_links_markup_or_header_lines(first_name: str, company: str) -> None:
    template = EmailTemplate(
        subject="For $company", paragraphs=("Hi $first_name, see [that](https://leadpipe.example/a).",)
    )
    linked: list[str] = []

    def link(url: str) -> str:
        linked.append(url)
        return "T"

    mail = render(template, {"first_name": first_name, "company": company}, link)
    assert linked == ["https://leadpipe.example/a"]
    assert "\n" not in mail.subject and "\r" not in mail.subject
    assert mail.html.count("<a ") == 1 and mail.html.count("<p>") == 2
    assert "<script" not in mail.html.lower()


def test_a_bad_template_names_the_file_and_the_key(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("subject: Hi $email\nparagraphs: ['See [x](javascript:alert(1))']\nextra: 1\n")
    with pytest.raises(TemplateError) as refused:
        load_template(path)
    text = str(refused.value)
    assert str(path) in text
    assert "subject" in text and "email" in text
    assert "paragraphs" in text and "http" in text
    assert "extra" in text


def test_a_directory_without_the_default_template_is_refused(tmp_path: Path) -> None:
    (tmp_path / "one.yaml").write_text("subject: One\nparagraphs: [Hello]\n")
    with pytest.raises(TemplateError, match="_default"):
        load_templates(tmp_path)


def test_the_confirmation_link_keeps_a_query_the_configured_url_has() -> None:
    settings = NurtureSettings(consent_confirm_url="https://in.example/confirm?lang=de", consent_secret="s3")
    mailer = Mailer(settings, ledger=None, transport=None, metrics=None)  # type: ignore[arg-type]
    url = URL(mailer.confirm_url(confirmation_command("2026-01|de")))
    assert url.query["lang"] == "de"
    claim = read_token(url.query["token"], "s3", confirmation_command().send_after)
    assert claim.text_version == "2026-01|de"
