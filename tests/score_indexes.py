"""Score workers' decay indexes, for tests that look into them."""

from __future__ import annotations

import pytest

from services.score import app as score_app
from services.score.due import DueIndex


def recorded_indexes(monkeypatch: pytest.MonkeyPatch) -> list[DueIndex]:
    """The decay index of every score app created from now on in the test, in order of creation."""
    indexes: list[DueIndex] = []

    class Recorded(DueIndex):
        def __init__(self) -> None:
            super().__init__()
            indexes.append(self)

    monkeypatch.setattr(score_app, "DueIndex", Recorded)
    return indexes
