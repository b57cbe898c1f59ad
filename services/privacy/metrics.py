"""Privacy metrics every service adds to its registry: requests handled and entries erased."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter


@dataclass(frozen=True)
class PrivacyMetrics:
    service: str
    requests: Counter
    erased: Counter
    retention_requests: Counter
    stale_dropped: Counter

    def handled(self, kind: str) -> None:
        self.requests.labels(self.service, kind).inc()

    def dropped_stale(self) -> None:
        self.stale_dropped.labels(self.service).inc()

    def count_erased(self, erased: dict[str, int]) -> None:
        for store, count in erased.items():
            if count:
                self.erased.labels(self.service, store).inc(count)


def privacy_metrics(service: str, registry: CollectorRegistry) -> PrivacyMetrics:
    return PrivacyMetrics(
        service=service,
        requests=Counter(
            "leadpipe_privacy_requests_total",
            "Privacy requests handled, by kind (erase, export).",
            ["service", "kind"],
            registry=registry,
        ),
        erased=Counter(
            "leadpipe_privacy_erased_entries_total",
            "Entries removed or pseudonymised by erasure, by store (table, Redis key family).",
            ["service", "store"],
            registry=registry,
        ),
        retention_requests=Counter(
            "leadpipe_privacy_retention_erase_requests_total",
            "Erase requests published for leads without activity within the retention period.",
            ["service"],
            registry=registry,
        ),
        stale_dropped=Counter(
            "leadpipe_privacy_stale_records_dropped_total",
            "Records about an erased lead that happened before its erasure, dropped (see privacy/guard.py).",
            ["service"],
            registry=registry,
        ),
    )
