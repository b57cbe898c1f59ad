"""Consumer lag arithmetic."""

from __future__ import annotations

from services.runtime.stream_app import partition_lag


def test_nothing_committed_means_everything_is_lag() -> None:
    assert partition_lag(10, None) == 10
    assert partition_lag(0, None) == 0


def test_last_committed_offset_is_processed() -> None:
    assert partition_lag(10, 9) == 0
    assert partition_lag(10, 4) == 5


def test_lag_is_never_negative() -> None:
    assert partition_lag(3, 7) == 0


def test_unknown_end_is_no_figure_rather_than_a_crash() -> None:
    """Right after an assignment faust knows no highwater yet; the lag timer must skip, not crash."""
    assert partition_lag(None, None) is None
    assert partition_lag(None, 4) is None
