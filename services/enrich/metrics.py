"""Enrich's own metrics, on the service's registry (never the global one)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.runtime.metrics import LATENCY_BUCKETS, Labelled


@dataclass(frozen=True)
class EnrichMetrics:
    enriched: Counter
    duplicates: Counter
    merges: Counter
    alias_conflicts: Counter
    late_identities: Counter
    provider_requests: Counter
    provider_seconds: Histogram
    cache_lookups: Counter
    cache_hit_ratio: Gauge
    breaker_open: Gauge
    _cache_counts: dict[str, int] = field(default_factory=lambda: {"hit": 0, "miss": 0})

    # The children of the counters updated per record, each looked up once (Labelled).
    @cached_property
    def published(self) -> Labelled[Counter]:
        return Labelled(self.enriched)

    @cached_property
    def provider_outcomes(self) -> Labelled[Counter]:
        return Labelled(self.provider_requests)

    def cache_result(self, result: str) -> None:
        """Count a cache lookup (hit, miss, error) and refresh the hit ratio gauge."""
        self.cache_lookups.labels(result).inc()
        if result in self._cache_counts:
            self._cache_counts[result] += 1
        total = sum(self._cache_counts.values())
        self.cache_hit_ratio.set(self._cache_counts["hit"] / total if total else 0.0)


def enrich_metrics(registry: CollectorRegistry) -> EnrichMetrics:
    return EnrichMetrics(
        enriched=Counter(
            "leadpipe_enrich_events_enriched_total",
            "Records published on leads.enriched.",
            ["enrichment", "kind"],  # complete|partial; live|replay|completion
            registry=registry,
        ),
        duplicates=Counter(
            "leadpipe_enrich_duplicates_total",
            "Events seen before (by event id) and skipped.",
            registry=registry,
        ),
        merges=Counter(
            "leadpipe_enrich_merges_total", "Anonymous leads merged into a known lead.", registry=registry
        ),
        alias_conflicts=Counter(
            "leadpipe_enrich_alias_conflicts_total",
            "Anonymous ids claimed by a second known lead (the first keeps them).",
            registry=registry,
        ),
        late_identities=Counter(
            "leadpipe_enrich_late_identifications_erased_total",
            "Known leads erased because a record from before a person's erasure of an anonymous lead "
            "identified them as it (a contact fetched while the lead was deleted on LinkedIn).",
            registry=registry,
        ),
        provider_requests=Counter(
            "leadpipe_enrich_provider_requests_total",
            "Firmographics provider lookups by outcome: hit, miss, error, timeout, short_circuit.",
            ["provider", "outcome"],
            registry=registry,
        ),
        provider_seconds=Histogram(
            "leadpipe_enrich_provider_seconds",
            "Firmographics provider latency.",
            ["provider"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
        cache_lookups=Counter(
            "leadpipe_enrich_cache_lookups_total",
            "Firmographics cache lookups: hit, miss, error.",
            ["result"],
            registry=registry,
        ),
        cache_hit_ratio=Gauge(
            "leadpipe_enrich_cache_hit_ratio", "Cache hits / (hits + misses) since start.", registry=registry
        ),
        breaker_open=Gauge(
            "leadpipe_enrich_provider_circuit_open",
            "1 while the provider's circuit breaker is open.",
            registry=registry,
        ),
    )
