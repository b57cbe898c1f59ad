"""Pure arithmetic over sampled counters: when a backlog was done and when work settled."""

from __future__ import annotations

from collections.abc import Sequence

Point = tuple[float, float]  # (time in seconds, counter value)


def first_at_least(points: Sequence[Point], value: float) -> int | None:
    """Index of the first point whose counter reached `value`, or None."""
    return next((i for i, (_, v) in enumerate(points) if v >= value), None)


def last_change(points: Sequence[Point]) -> int:
    """Index of the point where the counter first showed its final value (when work last happened)."""
    if not points:
        raise ValueError("no points")
    final = points[-1][1]
    index = len(points) - 1
    while index > 0 and points[index - 1][1] == final:
        index -= 1
    return index


def stable_for(points: Sequence[Point], seconds: float) -> bool:
    """True when the counter has not moved for at least `seconds` (and was sampled over that span)."""
    if not points:
        return False
    changed_at = points[last_change(points)][0]
    return points[-1][0] - changed_at >= seconds


def backlog_window(
    inputs: Sequence[Point],
    outputs: Sequence[Sequence[Point]],
    total: float,
    not_before: float = 0.0,
) -> tuple[int, int] | None:
    """(start, end) indices of the work on a backlog of `total` records, or None if it never finished.

    Start: the first point at or after `not_before` with input consumed. End: the input reached
    `total` and every output series had shown its final value. All series share the same times.
    """
    start = next((i for i, (t, v) in enumerate(inputs) if v > 0 and t >= not_before), None)
    done = first_at_least(inputs, total)
    if start is None or done is None:
        return None
    end = max([done, *(last_change(o) for o in outputs if o)])
    return start, max(start, end)
