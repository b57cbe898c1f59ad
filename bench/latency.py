"""Latency percentiles as the speed-to-lead case reports them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bench.report import percentile


@dataclass(frozen=True)
class LatencySummary:
    count: int
    p50: float
    p95: float
    p99: float
    max: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> LatencySummary:
        if not seconds:
            raise ValueError("no latencies")
        return cls(
            count=len(seconds),
            p50=percentile(seconds, 50),
            p95=percentile(seconds, 95),
            p99=percentile(seconds, 99),
            max=max(seconds),
        )

    def text(self) -> str:
        """Seconds with sensible precision: milliseconds matter below 10 s, not above."""

        def fmt(value: float) -> str:
            return f"{value:.3f}" if abs(value) < 10 else f"{value:,.1f}"

        return " / ".join(fmt(v) for v in (self.p50, self.p95, self.p99, self.max)) + f" (n={self.count})"
