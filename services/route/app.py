"""create_app(settings) -> RouteService: the only place route wires Kafka, Redis, config and metrics."""

from __future__ import annotations

from functools import partial

from redis.asyncio import Redis

from schemas.handoff import SlaEvent
from services.route import agents, api
from services.route.config import load_config
from services.route.metrics import RouteMetrics, route_metrics
from services.route.notifier import SlaNotifier
from services.route.router import Router
from services.route.settings import RouteSettings
from services.route.store import RedisStore
from services.runtime.codec import Decoder
from services.runtime.redis_client import redis_client
from services.runtime.send_once import SendClaims
from services.runtime.smtp import SmtpTransport
from services.runtime.stream_app import StreamService


class RouteService(StreamService):
    """The route worker: a StreamService plus its router and Redis client (closed by `close`)."""

    def __init__(self, settings: RouteSettings) -> None:
        super().__init__("route", settings)
        self.route_settings = settings
        self.config = load_config(settings.rules_file)
        self.redis: Redis = redis_client(settings.redis_url, settings.redis_timeout)
        self.store = RedisStore(self.redis, settings.redis_prefix)
        self.router = Router(self.config, self.store)
        self.route_metrics: RouteMetrics = route_metrics(self.metrics.registry)
        self.route_metrics.start_at_zero(
            [team.name for team in self.config.teams], [tier.name for tier in self.config.sla.tiers]
        )
        self.health.add("redis", self.store.ping)
        self.notifier = self._notifier(settings) if settings.notify_enabled else None

    def _notifier(self, settings: RouteSettings) -> SlaNotifier:
        claims = SendClaims(
            self.redis,
            f"{settings.redis_prefix}notice:",
            sent_ttl=settings.notify_sent_ttl_seconds,
            claim_ttl=settings.notify_lease_seconds,
        )
        decoder: Decoder[SlaEvent] = Decoder(SlaEvent, self.name)
        return SlaNotifier(
            settings,
            decode=partial(self.decode_record, decoder),
            config=self.config,
            store=self.store,
            claims=claims,
            transport=SmtpTransport(settings),
            metrics=self.route_metrics,
        )

    async def close(self) -> None:
        await self.redis.aclose()


def create_app(settings: RouteSettings) -> RouteService:
    service = RouteService(settings)
    agents.install(service, service.router, service.route_metrics, settings)
    api.install(service, service.router, settings.api_key_hashes, settings.max_body_bytes)
    notifier = service.notifier
    if notifier is not None:

        async def notices() -> None:  # a faust app task: cancelled when the worker stops
            await notifier.run(service.side_lags)

        service.app.task(notices)
    return service
