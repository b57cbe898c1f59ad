"""Each service alone at saturation: the real worker (`python -m services.<name>`) over a backlog of
realistic records on its input topic. Compare with `raw.aiokafka` in the same run (`vs raw`)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from bench import crm
from bench.case import BenchContext, CaseResult, OwnInput, register
from bench.provider import remote_provider
from bench.records import Record, enriched_stream, hand_raiser_changes, interactions, record, stage_changes
from bench.service_run import Effect, ServiceWorkload, one_source, run_service
from schemas.topics import TopicName
from services.devstack.crm_sink import routing_with_webhook
from services.enrich.agents import INBOX


def nurture_backlog(n: int) -> dict[TopicName, list[Record]]:
    """What nurture reads in the pipeline: every enriched interaction and the stage changes score
    emits for them (its consent and enrolment rules read both)."""
    events = enriched_stream(n)
    return {
        TopicName.ENRICHED: [record(e) for e in events],
        TopicName.STAGE_CHANGES: [record(c) for c in stage_changes(events)],
    }


WORKLOADS: dict[str, tuple[str, ServiceWorkload]] = {
    "enrich": (
        "enrich over leads.interactions from the demo traffic (anonymous visitors, forms, ad leads)",
        ServiceWorkload(
            "enrich",
            (TopicName.ENRICHED, INBOX),
            one_source(TopicName.INTERACTIONS, lambda n: [record(i) for i in interactions(n)]),
        ),
    ),
    "score": (
        "score over leads.enriched, ~10 events per lead, profiles as enrich makes them",
        ServiceWorkload(
            "score",
            (TopicName.STAGE_CHANGES,),
            one_source(TopicName.ENRICHED, lambda n: [record(e) for e in enriched_stream(n)]),
        ),
    ),
    "route": (
        "route over sales-ready stage changes of good-fit hand-raisers (Redis rotation)",
        ServiceWorkload(
            "route",
            (TopicName.HANDOFFS,),
            one_source(TopicName.STAGE_CHANGES, lambda n: [record(c) for c in hand_raiser_changes(n)]),
        ),
    ),
    "nurture": (
        "nurture over leads.enriched and the stage changes score emits for it (mailer off)",
        ServiceWorkload("nurture", (TopicName.NURTURE_OUTBOX,), nurture_backlog),
    ),
}


@dataclass(frozen=True)
class ServiceAlone(OwnInput):
    service: str
    name: str
    description: str

    async def run(self, ctx: BenchContext) -> CaseResult:
        _, workload = WORKLOADS[self.service]
        return await run_service(ctx, case=self.name, description=self.description, workload=workload)


for service, (description, _) in WORKLOADS.items():
    register(ServiceAlone(service, f"service.{service}", description))


@dataclass(frozen=True)
class EnrichRemoteProvider(OwnInput):
    """`service.enrich` against a remote provider (`bench/provider.py`) behind enrich's Redis cache:
    the lookups a batch awaits, which the local provider answers from memory."""

    name: str = "service.enrich-http"
    description: str = "enrich over the same traffic, firmographics from HTTP (20 ms) behind Redis"
    delay: float = 0.02

    async def run(self, ctx: BenchContext) -> CaseResult:
        _, workload = WORKLOADS["enrich"]
        async with remote_provider(self.delay) as url:
            remote = replace(workload, env={"ENRICH_PROVIDER": "http", "ENRICH_PROVIDER_URL": url})
            return await run_service(ctx, case=self.name, description=self.description, workload=remote)


register(EnrichRemoteProvider())


DELIVERED = "leadpipe_route_crm_deliveries_total"


@dataclass(frozen=True)
class RouteCrmWebhook(OwnInput):
    """`service.route` with every team's hand-offs posted to a CRM webhook (`bench/crm.py`) that
    answers after `delay`: what CRM delivery adds to route (its consumer of leads.handoffs, the Redis
    queue, the signed posts). The clock runs until the last post was taken."""

    name: str = "service.route-crm"
    description: str = "route over the same stage changes, every hand-off posted to a CRM webhook (20 ms)"
    delay: float = 0.02

    async def run(self, ctx: BenchContext) -> CaseResult:
        _, workload = WORKLOADS["route"]
        async with crm.crm_webhook(self.delay) as (url, taken):
            rules = routing_with_webhook(url, ctx.work_dir / f"{self.name}-{ctx.run_id}" / "routing.yaml")
            posting = replace(
                workload,
                env={"ROUTE_RULES_FILE": str(rules), "ROUTE_CRM_WEBHOOK_SECRET": crm.SECRET},
                effects={"CRM posts": Effect(DELIVERED, {"outcome": "delivered"}, TopicName.HANDOFFS)},
            )
            # The backlog is written once the worker is ready and its consumer of leads.handoffs,
            # in a group of its own, has joined (route's readiness does not wait for it).
            result = await run_service(
                ctx, case=self.name, description=self.description, workload=posting, produce_after_ready=True
            )
        result.figures["CRM posts taken, hand-offs among them, refused"] = (
            f"{taken.posts:,}, {len(taken.handoffs):,}, {taken.refused:,}"
        )
        return result


register(RouteCrmWebhook())
