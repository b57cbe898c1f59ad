"""Reading a service's `/metrics` text: the harness counts what a worker consumed from its counters."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def sample_sum(text: str, sample: str, **labels: str) -> float:
    """Sum of the samples named `sample` (e.g. `leadpipe_events_in_total`) whose labels include `labels`."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total
