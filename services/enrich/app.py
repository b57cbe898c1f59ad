"""`create_app(settings)`: the only place enrich wires Kafka, Redis, the provider and metrics."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from services.enrich.agents import INBOX, LEAD_ID_KEYS, Enricher, register
from services.enrich.breaker import CircuitBreaker
from services.enrich.config import load_config
from services.enrich.firmographics import (
    CachedProvider,
    HttpProvider,
    LocalProvider,
    Provider,
    load_companies,
)
from services.enrich.metrics import enrich_metrics
from services.enrich.settings import CACHE_TIMEOUT, EnrichSettings
from services.runtime.redis_client import redis_client
from services.runtime.stream_app import StreamService


def create_app(settings: EnrichSettings) -> StreamService:
    config = load_config(settings.config_file)
    service = StreamService("enrich", settings)
    metrics = enrich_metrics(service.metrics.registry)
    http: HttpProvider | None = None
    redis: Redis | None = None
    provider: Provider
    if settings.provider == "http":
        breaker = CircuitBreaker(settings.breaker_failures, settings.breaker_reset_seconds)
        http = HttpProvider(settings.provider_url, settings.provider_timeout, breaker, metrics)
        redis = redis_client(settings.redis_url, CACHE_TIMEOUT)
        provider = CachedProvider(
            http,
            redis,
            metrics,
            ttl=settings.cache_ttl_seconds,
            negative_ttl=settings.negative_cache_ttl_seconds,
            prefix=f"leadpipe:enrich{settings.topic_suffix}:firmographics:",
        )
    else:
        # The company file is in memory: no Redis cache in front of it. Each awaited round trip cost
        # more than the lookup and let the producer send the batch's records so far in a request of
        # their own: enrich 375 -> 296 µs per event alone (docs/performance.md, fourteenth pass).
        provider = LocalProvider(load_companies(settings.companies_file), metrics)
    app = service.app
    table_options: dict[str, Any] = {
        "default": None,
        "schema": LEAD_ID_KEYS,
        "partitions": settings.topic_partitions,
    }
    enricher = Enricher(
        service=service,
        settings=settings,
        config=config,
        provider=provider,
        metrics=metrics,
        leads=service.table("enrich-leads", help="Lead state by lead id.", **table_options),
        pending=service.table("enrich-pending", help="Domains partial records wait for.", **table_options),
        prefetch_lookups=settings.provider == "http",
        sink=service.topic("leads.enriched"),
        inbox=service.internal_topic(settings.topic(INBOX)),
    )
    register(enricher)

    async def close_clients(*args: Any, **kwargs: Any) -> None:
        if redis is not None:
            await redis.aclose()
        if http is not None:
            await http.close()

    app.on_before_shutdown.connect(close_clients)
    return service
