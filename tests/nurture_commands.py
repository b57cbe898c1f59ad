"""A nurture command as nurture would queue it, for tests that feed the mailer directly."""

from __future__ import annotations

from schemas.base import utcnow
from schemas.nurture import NurtureCommand


def command(event_id: str, lead_id: str, recipient: str) -> NurtureCommand:
    """Step 0 of the welcome sequence, due now, with consent on record."""
    now = utcnow()
    return NurtureCommand(
        event_id=event_id,
        occurred_at=now,
        lead_id=lead_id,
        sequence="welcome",
        step=0,
        template_id="welcome-1",
        recipient=recipient,
        consent_proof_ref="consent-1",
        send_after=now,
    )
