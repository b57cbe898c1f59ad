"""The circuit breaker in front of the HTTP firmographics provider."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.enrich.breaker import BreakerState, CircuitBreaker


def state(breaker: CircuitBreaker) -> BreakerState:
    """Read the state afresh (it changes with the clock and calls)."""
    return breaker.state


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_failures_in_a_row_then_tries_once_and_closes_on_success() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=3, reset_after=10, clock=clock)
    for _ in range(2):
        assert breaker.allow()
        breaker.failure()
    assert state(breaker) is BreakerState.CLOSED
    breaker.failure()
    assert state(breaker) is BreakerState.OPEN and not breaker.allow()
    clock.now = 10
    assert state(breaker) is BreakerState.HALF_OPEN
    assert breaker.allow() and not breaker.allow()  # one trial call at a time
    breaker.success()
    assert state(breaker) is BreakerState.CLOSED and breaker.allow()


def test_a_failed_trial_opens_again() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, reset_after=5, clock=clock)
    breaker.failure()
    clock.now = 5
    assert breaker.allow()
    breaker.failure()
    assert state(breaker) is BreakerState.OPEN and not breaker.allow()


@given(st.lists(st.booleans(), max_size=40), st.integers(1, 5))
def test_never_open_without_threshold_failures_in_a_row(outcomes: list[bool], threshold: int) -> None:
    breaker = CircuitBreaker(failure_threshold=threshold, reset_after=60, clock=Clock())
    streak = 0
    for ok in outcomes:
        if state(breaker) is BreakerState.OPEN:
            break
        if ok:
            breaker.success()
            streak = 0
        else:
            breaker.failure()
            streak += 1
        assert (state(breaker) is BreakerState.OPEN) == (streak >= threshold)
