"""Nurture's e-mail content: a template per configured step, safe personalisation, every link tracked."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.nurture import NurtureCommand
from services.nurture.mailer import TrackingLinks, build_message
from services.nurture.rules import load_rules
from services.nurture.settings import NurtureSettings
from services.nurture.templates import (
    DEFAULT_TEMPLATE,
    EmailTemplate,
    TemplateError,
    load_template,
    load_templates,
    render,
)
from services.runtime.tracking_tokens import TokenKind, TrackingTokens

LIBRARY = load_templates()
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
        assert "tracked:https://leadpipe.example/" in mail.text
    assert "Hi there," in render(template, {}, str).text


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
