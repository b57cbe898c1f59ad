"""A worker's memory against its limit and the keys its tables hold (services/runtime/memory.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from services.runtime.memory import (
    MemoryCollector,
    TableKeysCollector,
    cgroup_limit,
    meminfo_total,
    memory_limit,
    resident_bytes,
)
from services.runtime.metrics import common_metrics

MEMINFO = "MemTotal:       24683784 kB\nMemFree:         1000000 kB\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1073741824\n", 1073741824),  # a 1 GiB limit, v1 or v2
        ("max\n", None),  # cgroup v2 without a limit
        ("9223372036854771712\n", None),  # cgroup v1 without a limit
    ],
)
def test_cgroup_limit(text: str, expected: int | None) -> None:
    assert cgroup_limit(text) == expected


def test_meminfo_total_is_in_bytes() -> None:
    assert meminfo_total(MEMINFO) == 24683784 * 1024
    assert meminfo_total("MemFree: 1 kB\n") is None


def _files(tmp_path: Path, v2: str | None, v1: str | None) -> tuple[list[Path], Path]:
    paths = []
    for name, text in (("memory.max", v2), ("memory.limit_in_bytes", v1)):
        path = tmp_path / name
        if text is not None:
            path.write_text(text)
        paths.append(path)
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(MEMINFO)
    return paths, meminfo


@pytest.mark.parametrize(
    ("v2", "v1", "expected"),
    [
        ("536870912\n", "1073741824\n", 536870912),  # v2 wins where both are mounted
        (None, "1073741824\n", 1073741824),  # v1 only
        ("max\n", None, 24683784 * 1024),  # no limit: the machine's memory
        (None, "9223372036854771712\n", 24683784 * 1024),
        (None, None, 24683784 * 1024),  # no cgroup files at all
        ("garbage\n", "1073741824\n", 1073741824),  # an unreadable file is skipped
    ],
)
def test_memory_limit_is_the_cgroups_else_the_machines(
    tmp_path: Path, v2: str | None, v1: str | None, expected: int
) -> None:
    paths, meminfo = _files(tmp_path, v2, v1)
    assert memory_limit(paths, meminfo) == expected


def test_memory_limit_unknown(tmp_path: Path) -> None:
    assert memory_limit([tmp_path / "none"], tmp_path / "no-meminfo") is None


def test_resident_bytes_reads_pages(tmp_path: Path) -> None:
    statm = tmp_path / "statm"
    statm.write_text("5000 1200 300 10 0 900 0\n")
    assert resident_bytes(statm) == 1200 * os.sysconf("SC_PAGE_SIZE")
    assert resident_bytes(tmp_path / "missing") is None


def test_resident_bytes_of_this_process_is_plausible() -> None:
    used = resident_bytes()
    limit = memory_limit()
    assert used is not None and limit is not None
    assert 10 * 2**20 < used < limit


def _samples(registry: CollectorRegistry) -> dict[str, float]:
    found = {}
    for line in generate_latest(registry).decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            found[name] = float(value)
    return found


def test_memory_collector_reads_at_each_scrape() -> None:
    readings = iter([100, 250])
    registry = CollectorRegistry()
    registry.register(MemoryCollector("score", resident=lambda: next(readings)))
    first, second = _samples(registry), _samples(registry)
    assert first['leadpipe_memory_resident_bytes{service="score"}'] == 100
    assert second['leadpipe_memory_resident_bytes{service="score"}'] == 250
    assert second['leadpipe_memory_limit_bytes{service="score"}'] == memory_limit()


def test_memory_collector_leaves_out_what_it_cannot_read() -> None:
    registry = CollectorRegistry()
    registry.register(MemoryCollector("score", resident=lambda: None))
    assert not any(name.startswith("leadpipe_memory_resident") for name in _samples(registry))


def test_table_keys_are_counted_at_each_scrape() -> None:
    table: dict[bytes, bytes] = {}
    registry = CollectorRegistry()
    registry.register(TableKeysCollector("score", lambda: [("lead-scores", table), ("erased-leads", {})]))
    assert _samples(registry)['leadpipe_table_keys{service="score",table="lead-scores"}'] == 0
    table.update({b"a": b"1", b"b": b"2"})
    samples = _samples(registry)
    assert samples['leadpipe_table_keys{service="score",table="lead-scores"}'] == 2
    assert samples['leadpipe_table_keys{service="score",table="erased-leads"}'] == 0


def test_every_service_exports_its_memory() -> None:
    samples = _samples(common_metrics("capture").registry)
    assert samples['leadpipe_memory_resident_bytes{service="capture"}'] > 0
    assert samples['leadpipe_memory_limit_bytes{service="capture"}'] > 0


def test_a_stream_service_counts_its_tables_keys() -> None:
    from services.score.app import create_app
    from services.score.settings import ScoreSettings

    service = create_app(ScoreSettings())  # the score service's StreamService
    samples = _samples(service.metrics.registry)
    assert samples['leadpipe_table_keys{service="score",table="lead-scores"}'] == 0
    assert samples['leadpipe_table_keys{service="score",table="erased-leads"}'] == 0
