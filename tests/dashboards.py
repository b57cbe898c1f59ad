"""The PromQL the deploy files hold (Grafana panels, recording and alert rules), for the static
check in tests/unit/test_dashboards.py and the live one in tests/e2e/test_prometheus_live.py."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
DASHBOARDS = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
PROMETHEUS = ROOT / "deploy" / "prometheus"

# What Grafana puts in place of its variables before a query reaches Prometheus (a 1h dashboard).
GRAFANA_VARIABLES = {"$__range": "1h", "$__rate_interval": "1m", "$__interval": "15s"}


@dataclass(frozen=True)
class Query:
    where: str  # "lead-funnel.json / Cost per lead / A" or "alerts.yml / LeadpipeNoEvents"
    expr: str  # as Prometheus receives it (Grafana variables replaced)
    kind: str  # panel, record or alert
    name: str = ""  # the recorded series or the alert
    legend: str = ""  # a panel's legend format: "{{team}} {{tier}}"

    @property
    def legend_labels(self) -> set[str]:
        return set(re.findall(r"\{\{\s*(\w+)\s*\}\}", self.legend))


def promql(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    if "$" in expr:
        raise ValueError(f"unknown Grafana variable in {expr!r}")
    return expr


def panel_queries() -> list[Query]:
    found = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                where = f"{path.name} / {panel['title']} / {target['refId']}"
                legend = target.get("legendFormat", "")
                found.append(Query(where, promql(target["expr"]), "panel", legend=legend))
    return found


def rule_queries() -> list[Query]:
    document: dict[str, Any] = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    found = []
    for group in document["groups"]:
        for rule in group["rules"]:
            kind, name = ("record", rule["record"]) if "record" in rule else ("alert", rule["alert"])
            found.append(Query(f"alerts.yml / {name}", rule["expr"].strip(), kind, name))
    return found


# --- a small PromQL reader: enough to find the series and label names an expression uses -----

AGGREGATIONS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile",
}  # fmt: skip
KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
    "offset", "inf", "nan",
}  # fmt: skip
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_RANGE = re.compile(r"\[[^\]]*\]")
_LABEL_LIST = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^}]*)\}")
_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*\"")
_IDENTIFIER = re.compile(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")


@dataclass(frozen=True)
class Usage:
    series: frozenset[str]  # metric (or recorded) names selected
    matchers: frozenset[tuple[str, str]]  # (series, label) pairs in selectors
    grouping: frozenset[str]  # label names in by / without / on / ignoring / group_* lists


def usage(expr: str) -> Usage:
    """Series and label names an expression refers to (not a full parser; the live test is the judge)."""
    matchers: set[tuple[str, str]] = set()
    for selector in _SELECTOR.finditer(expr):
        name = selector.group(1) or ""
        for matcher in _MATCHER.finditer(selector.group(2)):
            matchers.add((name, matcher.group(1)))
    grouping = {
        label.strip()
        for clause in _LABEL_LIST.finditer(expr)
        for label in clause.group(2).split(",")
        if label.strip()
    }
    bare = _SELECTOR.sub(lambda m: m.group(1) or "", expr)
    bare = _RANGE.sub("", _STRING.sub('""', bare))
    bare = _LABEL_LIST.sub(lambda m: m.group(1), bare)
    series = set()
    for found in _IDENTIFIER.finditer(bare):
        name, call = found.group(1), found.group(2)
        if call or name in KEYWORDS or name in AGGREGATIONS:
            continue  # a function, an aggregation or a keyword
        series.add(name)
    # a selector made of matchers only ({__name__="..."}) names its series there
    for name, label in list(matchers):
        if not name and label == "__name__":
            raise ValueError(f"select series by name, not by __name__: {expr}")
    return Usage(frozenset(series), frozenset(matchers), frozenset(grouping))
