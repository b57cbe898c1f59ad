"""E-mail out through an SMTP server (aiosmtplib): nurture's drip mails and route's SLA notices.

`SmtpSettings` is a settings mixin: each service reads the same fields under its own prefix
(`NURTURE_SMTP_HOST`, `ROUTE_SMTP_HOST`, ...), so the two can use different servers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from typing import Protocol

import aiosmtplib
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings

from services.runtime.send_once import Accepted, Delivery, SendClaims, send_once

# What a failed attempt raises: retried after a back-off (services/runtime/send_once.py).
SMTP_ERRORS: tuple[type[BaseException], ...] = (aiosmtplib.SMTPException, OSError)


def refused_for_good(exc: BaseException) -> bool:
    """Will the server never take this message? A 5xx answer to the message itself (its sender, its
    recipients, its data), or an extension it needs that the server lacks (SMTPUTF8 for an address
    with non-ASCII letters). Not a 5xx to the login or the greeting: that is the server's or our
    settings' fault, mended by fixing them, and every mail waits until then."""
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        return True
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return bool(exc.recipients) and all(r.code >= 500 for r in exc.recipients)
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError | aiosmtplib.SMTPHeloError):
        return False
    return isinstance(exc, aiosmtplib.SMTPResponseException) and 500 <= exc.code < 600


class SmtpSettings(BaseSettings):
    """Where mail goes; the local default is the dev stack's aiosmtpd."""

    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(1025, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_timeout: float = Field(10.0, gt=0)
    smtp_retry_max_seconds: float = Field(60.0, gt=0, description="Longest back-off while SMTP is down.")


class Transport(Protocol):
    async def send(self, message: EmailMessage, accepted: Accepted) -> None:
        """Send `message`; await `accepted` as soon as the server has taken it (before QUIT)."""


class SmtpTransport:
    def __init__(self, settings: SmtpSettings) -> None:
        self._settings = settings

    async def send(self, message: EmailMessage, accepted: Accepted) -> None:
        s = self._settings
        client = aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username,
            password=s.smtp_password.get_secret_value() if s.smtp_password else None,
            start_tls=s.smtp_starttls,
            use_tls=False,
            timeout=s.smtp_timeout,
        )
        async with client:  # QUIT on the way out; an error in QUIT closes the connection instead
            await client.send_message(message)
            # The server's reply to the end of DATA is its acceptance: record it now, not after
            # QUIT, so a crash in between cannot make the replayed record send the mail again.
            await accepted()


async def mail_once(
    claims: SendClaims,
    message_id: str,
    transport: Transport,
    message: Callable[[], EmailMessage],
    *,
    retry_max_seconds: float,
    stopped: Callable[[], Awaitable[bool]] | None = None,
    failed: Callable[[BaseException], None] | None = None,
) -> Delivery:
    """The mail `message()` builds, once per `message_id`, retried until the server takes it
    (send_once.py), or refuses it for good (`refused_for_good`: REFUSED, for the caller to keep);
    built only when an attempt is made, not for a duplicate or a withheld one."""

    async def send(accepted: Accepted) -> None:
        await transport.send(message(), accepted)

    return await send_once(
        claims,
        message_id,
        send,
        retry_on=SMTP_ERRORS,
        retry_max_seconds=retry_max_seconds,
        stopped=stopped,
        failed=failed,
        permanent=refused_for_good,
    )
