"""The mailer's claim on a command: renewed while a slow SMTP attempt runs, short after a crash.

A short lease keeps the outbox from waiting long behind a claim a killed worker left (the nurture
kill soak waited 24 s per kill with a 30 s lease); renewal keeps a slow but live attempt's claim, so
no second mailer sends the same command meanwhile. Real Redis, real SMTP server (aiosmtpd).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError
from redis.asyncio import Redis

from services.nurture.mailer import Mailer, ledger_for
from services.nurture.metrics import nurture_metrics
from services.nurture.settings import NurtureSettings
from services.runtime.send_once import OWNER, SENDING, SENT, Claim, Delivery
from services.runtime.smtp import SmtpTransport
from tests.nurture_commands import command
from tests.smtp import local_smtp

pytestmark = pytest.mark.integration

LEASE = 3


@dataclass
class SlowServer:
    """Takes `delay` seconds to accept each recipient, like a slow remote MTA."""

    delay: float
    received: list[str] = field(default_factory=list)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        await asyncio.sleep(self.delay)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.extend(envelope.rcpt_tos)
        return "250 OK"


@pytest.fixture
def slow_smtp() -> Iterator[tuple[SlowServer, int]]:
    server = SlowServer(delay=2 * LEASE)
    with local_smtp(server) as port:
        yield server, port


@pytest.fixture
async def ledger_settings(redis_url: str, suffix: str) -> AsyncIterator[NurtureSettings]:
    yield NurtureSettings(
        redis_url=redis_url, topic_suffix=suffix, delivery_lease_seconds=LEASE, redis_timeout=1.0
    )


async def test_a_slow_attempt_keeps_its_claim_past_the_lease(
    ledger_settings: NurtureSettings, slow_smtp: tuple[SlowServer, int], redis_url: str, suffix: str
) -> None:
    server, port = slow_smtp
    settings = ledger_settings.model_copy(update={"smtp_port": port})
    ledger = ledger_for(settings)
    mailer = Mailer(settings, ledger, SmtpTransport(settings), nurture_metrics(CollectorRegistry()))
    cmd = command(f"lease{suffix}", "lease-lead", "slow@example.com")
    key = f"leadpipe:nurture{suffix}:sent:{cmd.event_id}"
    redis = Redis.from_url(redis_url)
    try:
        sending = asyncio.create_task(mailer.deliver(cmd))
        await asyncio.sleep(LEASE * 1.5)  # past the first lease: unrenewed, the claim would be gone
        assert await redis.get(key) == SENDING + OWNER
        assert 0 < await redis.ttl(key) <= LEASE
        assert await sending == (Delivery.SENT, None)
        assert await redis.get(key) == SENT
        assert server.received == ["slow@example.com"]
    finally:
        await redis.aclose()
        await ledger.close()


async def test_renew_never_extends_a_claim_another_worker_holds(
    ledger_settings: NurtureSettings, redis_url: str, suffix: str
) -> None:
    ledger = ledger_for(ledger_settings)
    redis = Redis.from_url(redis_url)
    key = f"leadpipe:nurture{suffix}:sent:other"
    try:
        await redis.set(key, b"sending:another-worker", ex=LEASE)
        assert await ledger.claim("other") is Claim.BUSY
        assert not await ledger.renew("other")
        assert await redis.get(key) == b"sending:another-worker"
        assert await ledger.claim("mine") is Claim.MINE
        assert await ledger.renew("mine")
        await ledger.confirm("mine")
        assert not await ledger.renew("mine")  # sent: nothing to hold any more
    finally:
        await redis.aclose()
        await ledger.close()


def test_a_lease_too_short_for_a_renewal_to_land_is_refused() -> None:
    with pytest.raises(ValidationError, match="delivery_lease_seconds"):
        NurtureSettings(delivery_lease_seconds=3, redis_timeout=2.0)
    assert NurtureSettings(delivery_lease_seconds=4, redis_timeout=2.0).delivery_lease_seconds == 4
