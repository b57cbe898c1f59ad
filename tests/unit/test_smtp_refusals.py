"""Which SMTP failures no retry mends: those are kept as dead letters, the rest retried."""

from __future__ import annotations

import aiosmtplib
import pytest

from services.runtime.smtp import refused_for_good

RECIPIENT_550 = aiosmtplib.SMTPRecipientRefused(550, "no such mailbox", "x@example.com")
RECIPIENT_450 = aiosmtplib.SMTPRecipientRefused(450, "mailbox busy", "y@example.com")


@pytest.mark.parametrize(
    ("error", "for_good"),
    [
        (aiosmtplib.SMTPNotSupported("SMTPUTF8 is not supported by this server"), True),
        (aiosmtplib.SMTPRecipientsRefused([RECIPIENT_550]), True),
        (aiosmtplib.SMTPRecipientsRefused([RECIPIENT_550, RECIPIENT_450]), False),  # one may pass later
        (aiosmtplib.SMTPRecipientsRefused([]), False),
        (aiosmtplib.SMTPDataError(554, "message refused as spam"), True),
        (aiosmtplib.SMTPSenderRefused(553, "sender not allowed", "from@example.com"), True),
        (aiosmtplib.SMTPDataError(451, "try again later"), False),
        (aiosmtplib.SMTPAuthenticationError(535, "bad credentials"), False),  # our settings: fix, then all go
        (aiosmtplib.SMTPHeloError(502, "no HELO"), False),
        (aiosmtplib.SMTPServerDisconnected("gone"), False),
        (aiosmtplib.SMTPConnectError("refused"), False),
        (ConnectionRefusedError(), False),
    ],
)
def test_only_a_refusal_of_the_message_itself_is_for_good(error: BaseException, for_good: bool) -> None:
    assert refused_for_good(error) is for_good
