"""The firmographics adapters against real sockets and the real Redis: unreachable, cached, Redis down."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from bench.provider import serving
from services.devstack.processes import free_port
from services.enrich.breaker import BreakerState, CircuitBreaker
from services.enrich.domain import LookupStatus
from services.enrich.firmographics import (
    DEFAULT_COMPANIES,
    CachedProvider,
    HttpProvider,
    LocalProvider,
    load_companies,
)
from services.enrich.metrics import enrich_metrics

pytestmark = pytest.mark.integration


async def test_unreachable_http_provider_answers_unavailable_and_opens_the_circuit() -> None:
    metrics = enrich_metrics(CollectorRegistry())
    breaker = CircuitBreaker(failure_threshold=2, reset_after=60)
    provider = HttpProvider(f"http://127.0.0.1:{free_port()}/c/{{domain}}", 0.5, breaker, metrics)
    try:
        answers = [await provider.lookup("acme.de") for _ in range(4)]
    finally:
        await provider.close()
    assert [a.status for a in answers] == [LookupStatus.UNAVAILABLE] * 4
    assert metrics.provider_requests.labels("http", "error")._value.get() == 2
    assert metrics.provider_requests.labels("http", "short_circuit")._value.get() == 2
    assert metrics.breaker_open._value.get() == 1


async def test_a_trial_call_cut_short_by_the_callers_budget_counts_as_a_failed_trial() -> None:
    """`Enricher.lookup` cancels a provider call that outlives its budget. A half-open trial call
    cancelled so must count as failed and free the trial: left running, the breaker refused every
    later lookup until a restart, and every business lead stayed partial."""
    slow = True

    async def company(request: web.Request) -> web.Response:
        if slow:
            await asyncio.sleep(5)
        return web.json_response({"company_name": "Acme GmbH", "domain": "acme.de"})

    metrics = enrich_metrics(CollectorRegistry())
    breaker = CircuitBreaker(failure_threshold=1, reset_after=0.2)
    async with serving(company) as port:
        provider = HttpProvider(f"http://127.0.0.1:{port}/companies/{{domain}}", 2.0, breaker, metrics)
        try:
            breaker.failure()  # opened by an earlier outage
            await asyncio.sleep(0.25)
            assert breaker.state is BreakerState.HALF_OPEN
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.1):  # the caller's budget ends during the trial
                    await provider.lookup("acme.de")
            assert breaker.state is BreakerState.OPEN  # the trial failed: open for another reset_after
            slow = False
            await asyncio.sleep(0.25)
            answer = await provider.lookup("acme.de")
        finally:
            await provider.close()
    assert answer.status is LookupStatus.FOUND and breaker.state is BreakerState.CLOSED


async def test_cache_answers_repeat_lookups_and_survives_redis_down(redis_url: str) -> None:
    metrics = enrich_metrics(CollectorRegistry())
    companies = load_companies(DEFAULT_COMPANIES)
    domain = next(iter(companies))
    local = LocalProvider(companies, metrics)
    prefix = f"test:{uuid.uuid4().hex}:"
    redis = Redis.from_url(redis_url)
    try:
        cached = CachedProvider(local, redis, metrics, ttl=60, negative_ttl=30, prefix=prefix)
        first = await cached.lookup(f"mail.{domain}")
        second = await cached.lookup(f"mail.{domain}")
        unknown = await cached.lookup("no-such-company.example")
        assert first.status is second.status is LookupStatus.FOUND
        assert second.provider == "local-cache" and second.firmographics == first.firmographics
        assert unknown.status is LookupStatus.NOT_FOUND
        assert 0 < await redis.ttl(f"{prefix}no-such-company.example") <= 30
        assert (await cached.lookup("no-such-company.example")).provider == "local-cache"
        assert metrics.cache_hit_ratio._value.get() == 0.5
    finally:
        await redis.aclose()
    down = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.2)
    try:
        answer = await CachedProvider(local, down, metrics, ttl=60, negative_ttl=30).lookup(domain)
    finally:
        await down.aclose()
    assert answer.status is LookupStatus.FOUND
    assert metrics.cache_lookups.labels("error")._value.get() >= 1


def test_shipped_company_file_is_realistic() -> None:
    companies = load_companies(DEFAULT_COMPANIES)
    assert len(companies) >= 200
    industries = {c.industry for c in companies.values()}
    countries = {c.country for c in companies.values()}
    assert len(industries) >= 10 and len(countries) >= 8
    for company in companies.values():
        assert company.employees is not None and company.employee_range is not None
        low, _, high = company.employee_range.partition("-")
        assert int(low) <= company.employees <= int(high)
        assert company.company_name and company.revenue_range and company.domain
