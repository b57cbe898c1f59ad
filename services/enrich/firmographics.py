"""Firmographics providers: a local company file, an HTTP service behind a circuit breaker, a Redis cache.

Each `lookup(domain)` answers within its time budget and never raises: a provider that is slow or
down answers `UNAVAILABLE`, and the event passes through marked partial.
"""

from __future__ import annotations

import asyncio
import csv
import logging
import time
from pathlib import Path
from typing import Protocol

import aiohttp
from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from schemas.profile import Firmographics
from services.enrich.breaker import BreakerState, CircuitBreaker
from services.enrich.domain import Lookup, LookupStatus
from services.enrich.metrics import EnrichMetrics

log = logging.getLogger(__name__)

DEFAULT_COMPANIES = Path(__file__).resolve().parents[2] / "data" / "companies.csv"


class Provider(Protocol):
    name: str

    async def lookup(self, domain: str) -> Lookup: ...


def load_companies(path: Path) -> dict[str, Firmographics]:
    """domain -> firmographics from a CSV with the columns of `data/companies.csv`."""
    companies: dict[str, Firmographics] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            try:
                domain = row["domain"].strip().lower()
                companies[domain] = Firmographics(
                    company_name=row.get("company_name") or None,
                    domain=domain,
                    employee_range=row.get("employee_range") or None,
                    employees=int(row["employees"]) if row.get("employees") else None,
                    industry=row.get("industry") or None,
                    revenue_range=row.get("revenue_range") or None,
                    country=row.get("country") or None,
                )
            except (KeyError, ValueError, ValidationError) as exc:
                raise ValueError(f"{path}:{line}: {exc}") from None
    return companies


class LocalProvider:
    """Looks domains up in the shipped company file (or its parent domain: eu.acme.com -> acme.com)."""

    name = "local"

    def __init__(self, companies: dict[str, Firmographics], metrics: EnrichMetrics | None = None) -> None:
        self.companies = companies
        self.metrics = metrics

    def find(self, domain: str) -> Lookup:
        """The answer without counting it: the lookup itself, for callers outside an event loop."""
        parts = domain.split(".")
        for candidate in (".".join(parts[i:]) for i in range(len(parts) - 1)):
            if candidate in self.companies:
                return Lookup(domain, LookupStatus.FOUND, self.companies[candidate], self.name)
        return Lookup(domain, LookupStatus.NOT_FOUND, None, self.name)

    async def lookup(self, domain: str) -> Lookup:
        result = self.find(domain)
        if self.metrics is not None:
            outcome = "hit" if result.status is LookupStatus.FOUND else "miss"
            self.metrics.provider_outcomes(self.name, outcome).inc()
        return result


class HttpProvider:
    """GET `url_template.format(domain=...)`: 200 with a Firmographics JSON body, 404 when unknown.

    Bounded by `timeout`; after `breaker.failure_threshold` failures in a row the breaker opens and
    lookups answer UNAVAILABLE at once until a trial call succeeds.
    """

    name = "http"

    def __init__(
        self,
        url_template: str,
        timeout: float,
        breaker: CircuitBreaker,
        metrics: EnrichMetrics,
    ) -> None:
        self.url_template = url_template
        self.timeout = timeout
        self.breaker = breaker
        self.metrics = metrics
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _outcome(self, outcome: str) -> None:
        self.metrics.provider_outcomes(self.name, outcome).inc()
        self.metrics.breaker_open.set(1 if self.breaker.state is BreakerState.OPEN else 0)

    async def lookup(self, domain: str) -> Lookup:
        if not self.breaker.allow():
            self._outcome("short_circuit")
            return Lookup(domain, LookupStatus.UNAVAILABLE, None, self.name)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout):
                async with self._client().get(self.url_template.format(domain=domain)) as response:
                    if response.status == 404:
                        result = Lookup(domain, LookupStatus.NOT_FOUND, None, self.name)
                    else:
                        response.raise_for_status()
                        body = await response.read()
                        firmographics = Firmographics.model_validate_json(body)
                        result = Lookup(domain, LookupStatus.FOUND, firmographics, self.name)
        except TimeoutError:
            self.breaker.failure()
            self._outcome("timeout")
            return Lookup(domain, LookupStatus.UNAVAILABLE, None, self.name)
        except (aiohttp.ClientError, ValidationError, OSError) as exc:
            self.breaker.failure()
            self._outcome("error")
            log.debug("firmographics lookup failed: %s", exc)
            return Lookup(domain, LookupStatus.UNAVAILABLE, None, self.name)
        except BaseException:
            # Cancelled (the caller's lookup budget ran out, which counts the timeout) or unforeseen:
            # a failure all the same, or a half-open trial call would stay running and the breaker
            # refuse every later call until a restart.
            self.breaker.failure()
            self.metrics.breaker_open.set(1 if self.breaker.state is BreakerState.OPEN else 0)
            raise
        finally:
            self.metrics.provider_seconds.labels(self.name).observe(time.perf_counter() - started)
        self.breaker.success()
        self._outcome("hit" if result.status is LookupStatus.FOUND else "miss")
        return result


class CachedProvider:
    """Redis in front of a provider: answers kept `ttl` seconds, unknown domains `negative_ttl`.

    Redis trouble is a cache miss, never a failure of the event.
    """

    def __init__(
        self,
        inner: Provider,
        redis: Redis,
        metrics: EnrichMetrics,
        *,
        ttl: int,
        negative_ttl: int,
        prefix: str = "leadpipe:enrich:firmographics:",
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.redis = redis
        self.metrics = metrics
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.prefix = prefix

    async def lookup(self, domain: str) -> Lookup:
        key = self.prefix + domain
        try:
            answer = await self.redis.get(key)
            cached = answer.encode() if isinstance(answer, str) else answer
        except (RedisError, OSError, TimeoutError):
            self.metrics.cache_result("error")
            cached = None
        else:
            self.metrics.cache_result("hit" if cached is not None else "miss")
        if cached is not None:
            if cached == b"null":
                return Lookup(domain, LookupStatus.NOT_FOUND, None, f"{self.name}-cache")
            try:
                return Lookup(
                    domain,
                    LookupStatus.FOUND,
                    Firmographics.model_validate_json(cached),
                    f"{self.name}-cache",
                )
            except ValidationError:
                pass
        result = await self.inner.lookup(domain)
        if result.status is LookupStatus.UNAVAILABLE:
            return result
        value = result.firmographics.model_dump_json().encode() if result.firmographics else b"null"
        try:
            await self.redis.set(key, value, ex=self.ttl if result.firmographics else self.negative_ttl)
        except (RedisError, OSError, TimeoutError):
            self.metrics.cache_result("error")
        return result
