"""The double opt-in mail's link: light enough for `leadpipe dev`'s demo people to follow the same
link the mailer sends (services/devstack/demo_people.py) without importing the mailer's framework."""

from __future__ import annotations

from datetime import timedelta

from yarl import URL

from schemas.nurture import NurtureCommand
from services.nurture.settings import NurtureSettings
from services.runtime.consent_tokens import make_token


def confirm_link(settings: NurtureSettings, command: NurtureCommand) -> str:
    """The signed confirmation link of a consent request; from when the mail was due, so a retry
    sends the same one."""
    expires = command.send_after + timedelta(seconds=settings.consent_token_ttl_seconds)
    version = str(command.personalisation.get("consent_text_version") or "unversioned")
    token = make_token(command.lead_id, version, expires, settings.consent_secret.get_secret_value())
    return str(URL(settings.consent_confirm_url).update_query(token=token))
