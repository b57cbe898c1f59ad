"""Exponential decay of engagement: score(t) = score(t0) * 2^(-(t - t0) / half_life)."""

from __future__ import annotations

import math


def factor(elapsed: float, half_life: float) -> float:
    """The multiplier after `elapsed` seconds; 1 for no (or negative) elapsed time, never below 0."""
    if elapsed <= 0:
        return 1.0
    result: float = 2.0 ** (-elapsed / half_life)
    return result


def decayed(score: float, elapsed: float, half_life: float) -> float:
    return score * factor(elapsed, half_life)


def crossing_after(score: float, limit: float, half_life: float) -> float | None:
    """Seconds until a positive `score` decays below `limit` (> 0); 0 if already below, None if never."""
    if limit <= 0:
        return None
    if score < limit:
        return 0.0
    return half_life * math.log2(score / limit)
