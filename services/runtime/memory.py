"""A worker's memory against its limit, and the leads its tables hold, as Prometheus series.

Why: enrich, score and nurture keep every lead's state in memory (faust's memory store), so a
worker's memory grows with the leads it holds: in score about 2.25 KB per lead after one form fill
and 4.4 KB after ten events (docs/performance.md, sixteenth pass). A worker past its container's limit is
killed, restarts, reads its changelog back into the same memory and is killed again: the pipeline
stops scoring. These series let ops see the headroom and be warned before that
(deploy/prometheus/alerts.yml, `LeadpipeWorkerMemoryNearLimit`).

Resident memory comes from /proc; the limit from the cgroup (v2 `memory.max`, else v1
`memory.limit_in_bytes`), else the machine's memory: with no cgroup limit that is what the worker
can use before the kernel's OOM killer acts.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sized
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

CGROUP_LIMITS = (
    Path("/sys/fs/cgroup/memory.max"),  # cgroup v2
    Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),  # cgroup v1
)
MEMINFO = Path("/proc/meminfo")
STATM = Path("/proc/self/statm")
# cgroup v1 writes "no limit" as the largest page-aligned 64-bit value; anything this large is none.
UNLIMITED_FROM = 1 << 62


def cgroup_limit(text: str) -> int | None:
    """Bytes from a cgroup limit file's text; None for no limit ("max", or v1's huge value)."""
    value = text.strip()
    if value == "max":
        return None
    limit = int(value)
    return None if limit >= UNLIMITED_FROM else limit


def meminfo_total(text: str) -> int | None:
    """MemTotal in bytes from /proc/meminfo's text (which counts in kB)."""
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return None


def memory_limit(limit_files: Iterable[Path] = CGROUP_LIMITS, meminfo: Path = MEMINFO) -> int | None:
    """What this process may use: its cgroup's limit, else the machine's memory (None if unknown)."""
    for path in limit_files:
        try:
            limit = cgroup_limit(path.read_text())
        except (OSError, ValueError):
            continue
        if limit is not None:
            return limit
    try:
        return meminfo_total(meminfo.read_text())
    except (OSError, ValueError):
        return None


def resident_bytes(statm: Path = STATM) -> int | None:
    """This process's resident set (the second field of /proc/self/statm, in pages)."""
    try:
        return int(statm.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class MemoryCollector(Collector):
    """`leadpipe_memory_resident_bytes` and `leadpipe_memory_limit_bytes` of one service, read at
    each scrape. The limit is read once: a container's limit does not change while it runs."""

    def __init__(
        self,
        service: str,
        resident: Callable[[], int | None] = resident_bytes,
        limit: Callable[[], int | None] = memory_limit,
    ) -> None:
        self.service = service
        self.resident = resident
        self.limit = limit()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        resident = GaugeMetricFamily(
            "leadpipe_memory_resident_bytes", "Resident memory of the worker.", labels=["service"]
        )
        limit = GaugeMetricFamily(
            "leadpipe_memory_limit_bytes",
            "Memory the worker may use: its container's limit, else the machine's memory.",
            labels=["service"],
        )
        used = self.resident()
        if used is not None:
            resident.add_metric([self.service], used)
        if self.limit is not None:
            limit.add_metric([self.service], self.limit)
        yield resident
        yield limit


class TableKeysCollector(Collector):
    """`leadpipe_table_keys{service, table}`: the keys (leads, for the lead tables) each table holds
    on this worker, counted at each scrape; with resident memory it gives the memory per lead."""

    def __init__(self, service: str, tables: Callable[[], Iterable[tuple[str, Sized]]]) -> None:
        self.service = service
        self.tables = tables

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "leadpipe_table_keys",
            "Keys a table holds on this worker (its partitions only).",
            labels=["service", "table"],
        )
        for name, table in self.tables():
            family.add_metric([self.service, name], len(table))
        yield family
