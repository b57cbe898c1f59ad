"""How long to wait before trying an outside system again."""

from __future__ import annotations


def retry_delay(attempts: int, first: float, longest: float) -> float:
    """Seconds before the next try after `attempts` failed ones: first, doubled each time, capped."""
    return float(min(first * 2 ** max(0, attempts - 1), longest))
