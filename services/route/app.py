"""create_app(settings) -> RouteService: the only place route wires Kafka, Redis, config and metrics."""

from __future__ import annotations

import os
from functools import partial

from redis.asyncio import Redis

from schemas.handoff import Handoff, SlaEvent
from services.privacy.policy import load_policy
from services.route import agents, api
from services.route.config import ConfigError, load_config
from services.route.crm import team_secrets
from services.route.crm_delivery import CrmDelivery
from services.route.crm_queue import CrmQueue
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
        try:
            self.crm_secrets = team_secrets(self.config, settings.crm_secrets, os.environ)
        except ValueError as exc:
            raise ConfigError(f"{settings.rules_file}: {exc}") from None
        crm_teams = list(self.crm_secrets)
        self.redis: Redis = redis_client(settings.redis_url, settings.redis_timeout)
        guard = load_policy(settings.privacy_file, settings.topics_file).erasure_guard
        self.store = RedisStore(
            self.redis,
            settings.redis_prefix,
            erasure_guard_seconds=int(guard.total_seconds()),
            reminder_keep_seconds=settings.sla_reminder_keep_seconds,
        )
        self.router = Router(self.config, self.store)
        self.route_metrics: RouteMetrics = route_metrics(self.metrics.registry)
        self.route_metrics.start_at_zero(
            [team.name for team in self.config.teams],
            [tier.name for tier in self.config.sla.tiers],
            crm_teams,
        )
        self.health.add("redis", self.store.ping)
        self.notifier = self._notifier(settings) if settings.notify_enabled else None
        # Made without any webhook too: it gives up what an earlier config queued (CrmDelivery.run).
        self.crm: CrmDelivery = self._crm(settings)

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

    def _crm(self, settings: RouteSettings) -> CrmDelivery:
        queue = CrmQueue(
            self.redis,
            settings.redis_prefix,
            done_ttl=settings.crm_done_ttl_seconds,
            keep_failed_seconds=settings.crm_keep_failed_seconds,
        )
        decoder: Decoder[Handoff] = Decoder(Handoff, self.name, trusted=True)  # route's own records
        return CrmDelivery(
            settings,
            config=self.config,
            queue=queue,
            decode=partial(self.decode_record, decoder),
            dead_letter=self.dead_letter,
            metrics=self.route_metrics,
            secrets=self.crm_secrets,
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
    crm = service.crm

    async def crm_deliveries() -> None:  # a faust app task: cancelled when the worker stops
        await crm.run(service.side_lags)

    service.app.task(crm_deliveries)
    return service
