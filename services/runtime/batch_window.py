"""How long a batched agent waits for a batch to fill: short while the agent is mostly idle, longer
as it gets busy.

Why: every batch costs the same fixed work whatever it holds (a commit, a produce request per
partition it writes, acknowledgements; on Tansu each stored batch also makes every later fetch of
its partition dearer, docs/performance.md, eleventh pass). A longer wait gathers more records per
batch, but the first record of every batch waits for it. Measured at 1,000 events/s on two cores
(twelfth pass), a 20 ms window instead of 5 ms cut the broker's CPU by about a tenth and the
speed-to-lead p99 in four pairs of runs out of four; at 100 events/s it added 45 ms to the p50 (three
hops, each waiting the window for records that were not coming), and a window growing with any
load added 12-16 ms to the p50 at 300 and 500 events/s, where the stack had cores to spare and
fewer batches bought nothing. So the window follows the agent's load above a slack: the shortest
while its handling takes at most half of the wall clock, the longest when it takes all of it, in
proportion between.

Load is the share of the wall clock the agent spent handling its batches, averaged over about the
last second (an exponential average weighted by time, so one quiet minute resets it at once and a
hand-raiser after a lull gets the shortest wait). Wall clock, not CPU: on a shared machine a
handler waiting for a core is as late as one computing.
"""

from __future__ import annotations

import math
from collections.abc import Callable

# Seconds over which the load is averaged: long enough to ride over one slow batch, short enough
# that a burst's end or a quiet spell shows within a second.
LOAD_HORIZON_SECONDS = 1.0
# Up to this load the agent has time to spare, and a longer wait would only delay records.
SLACK_LOAD = 0.5


class AdaptiveWindow:
    """The batch window for the next batch (`seconds`), from the load of the batches before it."""

    def __init__(
        self, shortest: float, longest: float, report: Callable[[float], None] = lambda seconds: None
    ) -> None:
        if not 0 < shortest <= longest:
            raise ValueError(f"need 0 < shortest <= longest, got {shortest} and {longest}")
        self.shortest, self.longest = shortest, longest
        self.load = 0.0  # share of the wall clock spent handling batches, 0..1
        self._report = report  # told each new window (the service's gauge)

    @property
    def seconds(self) -> float:
        pressure = max(0.0, self.load - SLACK_LOAD) / (1.0 - SLACK_LOAD)
        return self.shortest + (self.longest - self.shortest) * pressure

    def observe(self, handling: float, cycle: float) -> None:
        """One batch: `handling` seconds from its hand-over until the agent asked for the next one,
        within `cycle` seconds since the batch before it was handled."""
        if cycle <= 0:
            return
        share = min(1.0, max(0.0, handling / cycle))
        weight = 1.0 - math.exp(-cycle / LOAD_HORIZON_SECONDS)
        self.load += weight * (share - self.load)
        self._report(self.seconds)
