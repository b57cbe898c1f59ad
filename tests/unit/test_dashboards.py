"""Every Grafana panel's query and every rule is valid PromQL and names only series and labels the
services really export, taken from each service's own registry (built by its `create_app`)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from services.devstack.stack import available_services
from tests.apps import build_app
from tests.dashboards import DASHBOARDS, PROMETHEUS, ROOT, Query, panel_queries, promql, rule_queries, usage

# Every service the dev stack runs that has an app to build.
SERVICES = [name for name, _, _ in available_services() if (ROOT / "services" / name / "app.py").exists()]
# Series Prometheus makes itself for every target, not the services.
PROMETHEUS_SERIES = {"up": frozenset({"job", "instance"})}
HISTOGRAM_SUFFIXES = ("bucket", "sum", "count")

Exported = dict[str, frozenset[str]]  # series name -> label names it carries


def _series_of(registry: CollectorRegistry) -> Exported:
    """Series names with their labels, from the registry's collectors (also those never observed)."""
    found: Exported = {}
    collectors: dict[Any, Any] = registry._collector_to_names  # private: labels of unobserved metrics
    for collector in collectors:
        labels = frozenset(getattr(collector, "_labelnames", ()))
        describe = getattr(collector, "describe", None)  # the standard collectors have none
        for family in (describe() if describe else None) or collector.collect():
            # a collector of its own (services/runtime/memory.py) names its labels in its samples only
            sampled = labels | {label for s in family.samples for label in s.labels}
            if family.type == "counter":
                found[f"{family.name}_total"] = sampled
            elif family.type == "histogram":
                for suffix in HISTOGRAM_SUFFIXES:
                    found[f"{family.name}_{suffix}"] = labels | {"le"} if suffix == "bucket" else labels
            else:
                found[family.name] = sampled
    return found


def _registry_of(service: str) -> CollectorRegistry:
    """Build the service's app from default settings (nothing connects) and take its registry."""
    app = build_app(service)
    if service == "capture":
        from services.capture.keys import METRICS

        registry: CollectorRegistry = app[METRICS].registry
        return registry
    service_object = getattr(app, "service", app)
    return service_object.metrics.registry  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def exported() -> Exported:
    names: Exported = {}
    for service in SERVICES:
        for name, labels in _series_of(_registry_of(service)).items():
            names[name] = names.get(name, frozenset()) | labels
    return names


@pytest.fixture(scope="module")
def target_labels() -> frozenset[str]:
    """Labels Prometheus adds to every scraped series: job, instance and the static ones."""
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    static = {
        label
        for job in config["scrape_configs"]
        for group in job["static_configs"]
        for label in group["labels"]
    }
    return frozenset({"job", "instance", *static})


def _check(query: Query, known: Exported, extra: frozenset[str]) -> list[str]:
    used = usage(query.expr)
    problems = [f"no service exports {name}" for name in sorted(used.series - set(known))]
    for name, label in sorted(used.matchers):
        if name in known and label not in known[name] | extra:
            problems.append(f"{name} has no label {label!r}")
    available = set(extra).union(*(known.get(name, frozenset()) for name in used.series))
    problems += [f"no series here has the label {label!r}" for label in sorted(used.grouping - available)]
    if not used.series:
        problems.append("selects no series")
    return problems


def test_there_are_two_dashboards_with_panels() -> None:
    titles = {json.loads(p.read_text())["title"] for p in DASHBOARDS}
    assert titles == {"Pipeline health", "Lead funnel"}
    assert len(panel_queries()) >= 30
    for path in DASHBOARDS:
        ids = [panel["id"] for panel in json.loads(path.read_text())["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: panel ids repeat"


def test_the_funnel_has_cost_per_lead_from_campaign_cost() -> None:
    cost = [q for q in panel_queries() if "Cost per lead" in q.where]
    assert cost, "the Lead funnel needs a cost per lead panel"
    assert "leadpipe_campaign_cost" in cost[0].expr
    assert "leadpipe_funnel_leads_captured_total" in cost[0].expr


@pytest.mark.parametrize("query", panel_queries(), ids=lambda q: q.where[:80])
def test_panel_uses_only_exported_series_and_labels(
    exported: Exported, target_labels: frozenset[str], query: Query
) -> None:
    known = {**exported, **PROMETHEUS_SERIES}
    problems = _check(query, known, target_labels)
    assert not problems, f"{query.where}: {'; '.join(problems)}\n{query.expr}"


@pytest.mark.parametrize("query", rule_queries(), ids=lambda q: q.where)
def test_rule_uses_only_exported_or_recorded_series(
    exported: Exported, target_labels: frozenset[str], query: Query
) -> None:
    recorded = {q.name: frozenset[str]() for q in rule_queries() if q.kind == "record"}
    # a recorded series keeps the labels its expression groups by
    for q in rule_queries():
        if q.kind == "record":
            recorded[q.name] = usage(q.expr).grouping
    known = {**exported, **PROMETHEUS_SERIES, **recorded}
    problems = _check(query, known, target_labels)
    assert not problems, f"{query.where}: {'; '.join(problems)}\n{query.expr}"


def test_the_reader_finds_series_and_labels() -> None:
    """The small PromQL reader this check relies on, on the shapes the dashboards use."""
    found = usage(
        "max by (campaign) (leadpipe_campaign_cost) / on (campaign) sum by (campaign) "
        '(increase(leadpipe_funnel_leads_captured_total{channel!="other"}[1h])) '
        "or histogram_quantile(0.95, sum by (le) (rate(x_seconds_bucket[5m]))) > bool 0.5e1 or vector(0)"
    )
    assert found.series == {
        "leadpipe_campaign_cost",
        "leadpipe_funnel_leads_captured_total",
        "x_seconds_bucket",
    }
    assert found.matchers == {("leadpipe_funnel_leads_captured_total", "channel")}
    assert found.grouping == {"campaign", "le"}
    bad = Query(
        "test", 'sum by (sorce) (rate(leadpipe_capture_events_published_total{tpye="x"}[1m]))', "panel"
    )
    known = {"leadpipe_capture_events_published_total": frozenset({"type", "source"})}
    assert _check(bad, known, frozenset({"job"})) == [
        "leadpipe_capture_events_published_total has no label 'tpye'",
        "no series here has the label 'sorce'",
    ]
    assert _check(Query("t", "rate(leadpipe_nope_total[1m])", "panel"), known, frozenset()) == [
        "no service exports leadpipe_nope_total"
    ]


def test_grafana_variables_are_replaced() -> None:
    assert promql("increase(x[$__range])") == "increase(x[1h])"
    with pytest.raises(ValueError, match="unknown Grafana variable"):
        promql("rate(x[$window])")


def test_panel_queries_are_valid_promql(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `make test` installs Debian's prometheus package"
    rules = {
        "groups": [
            {
                "name": "dashboards",
                "rules": [{"record": f"panel:{i}", "expr": q.expr} for i, q in enumerate(panel_queries())],
            }
        ]
    }
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
