"""The batch window follows the agent's load: the shortest wait while idle, the longest while busy
(services/runtime/batch_window.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.runtime.batch_window import LOAD_HORIZON_SECONDS, SLACK_LOAD, AdaptiveWindow

SHORTEST, LONGEST = 0.005, 0.025


def run(window: AdaptiveWindow, handling: float, cycle: float, seconds: float) -> AdaptiveWindow:
    """Feed `seconds` of batches, each handled for `handling` of its `cycle`."""
    for _ in range(round(seconds / cycle)):
        window.observe(handling, cycle)
    return window


def test_an_agent_that_has_handled_nothing_waits_the_shortest() -> None:
    assert AdaptiveWindow(SHORTEST, LONGEST).seconds == SHORTEST


def test_an_agent_busy_all_the_time_waits_the_longest() -> None:
    window = run(AdaptiveWindow(SHORTEST, LONGEST), handling=0.03, cycle=0.03, seconds=10)
    assert window.seconds == pytest.approx(LONGEST, abs=1e-5)


def test_an_agent_with_time_to_spare_waits_the_shortest() -> None:
    """Below the slack a longer wait would only delay records (12-16 ms of p50 at 300-500 events/s)."""
    window = run(AdaptiveWindow(SHORTEST, LONGEST), handling=0.018, cycle=0.04, seconds=10)
    assert window.load == pytest.approx(0.45, abs=1e-3)
    assert window.seconds == SHORTEST


def test_above_the_slack_the_wait_is_in_proportion_to_the_load() -> None:
    window = run(AdaptiveWindow(SHORTEST, LONGEST), handling=0.03, cycle=0.04, seconds=10)
    assert window.load == pytest.approx(0.75, abs=1e-3)
    pressure = (0.75 - SLACK_LOAD) / (1 - SLACK_LOAD)
    assert window.seconds == pytest.approx(SHORTEST + pressure * (LONGEST - SHORTEST), abs=1e-5)


def test_a_quiet_spell_brings_the_shortest_wait_back_at_once() -> None:
    """A hand-raiser after a lull should not wait as long as during the burst before it."""
    window = run(AdaptiveWindow(SHORTEST, LONGEST), handling=0.03, cycle=0.03, seconds=5)
    window.observe(0.001, 30 * LOAD_HORIZON_SECONDS)
    assert window.seconds == pytest.approx(SHORTEST, abs=1e-5)


def test_one_slow_batch_does_not_make_a_quiet_agent_busy() -> None:
    window = run(AdaptiveWindow(SHORTEST, LONGEST), handling=0.001, cycle=0.05, seconds=5)
    window.observe(0.5, 0.5)
    assert window.load < SLACK_LOAD
    assert window.seconds == SHORTEST


def test_each_new_window_is_reported() -> None:
    reported: list[float] = []
    window = AdaptiveWindow(SHORTEST, LONGEST, report=reported.append)
    window.observe(0.9, 0.9)
    window.observe(0.0, 0.0)  # no time passed: nothing to learn
    assert reported == [window.seconds]
    assert SHORTEST < reported[0] < LONGEST


@pytest.mark.parametrize(("shortest", "longest"), [(0.0, 0.01), (0.02, 0.01), (-0.01, 0.01)])
def test_bounds_out_of_order_are_refused(shortest: float, longest: float) -> None:
    with pytest.raises(ValueError, match="shortest <= longest"):
        AdaptiveWindow(shortest, longest)


batches = st.lists(
    st.tuples(st.floats(0, 5, allow_nan=False), st.floats(0, 120, allow_nan=False)), max_size=60
)


@given(batches)
def test_the_wait_stays_between_its_bounds(history: list[tuple[float, float]]) -> None:
    window = AdaptiveWindow(SHORTEST, LONGEST)
    for handling, cycle in history:
        window.observe(handling, cycle)
        assert SHORTEST <= window.seconds <= LONGEST


@given(batches, st.floats(0, 1))
def test_a_busier_agent_never_waits_less(history: list[tuple[float, float]], extra: float) -> None:
    """Two agents with the same batch times, one spending more of each cycle handling."""
    calm, busy = AdaptiveWindow(SHORTEST, LONGEST), AdaptiveWindow(SHORTEST, LONGEST)
    for handling, cycle in history:
        calm.observe(min(handling, cycle), cycle)
        busy.observe(min(handling, cycle) + extra * (cycle - min(handling, cycle)), cycle)
        assert busy.seconds >= calm.seconds - 1e-12
