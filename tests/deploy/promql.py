"""The metric and label names a PromQL expression relies on (Grafana panels, adapter rules),
checked against the series the service exposes."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

METRIC = re.compile(r"\bactserve_[A-Za-z0-9_:]*")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
SELECTOR = re.compile(r"\{([^{}]*)\}")
MATCHER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")
LEGEND = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def metric_names(expr: str) -> set[str]:
    return set(METRIC.findall(expr))


def label_names(expr: str, legend: str = "") -> set[str]:
    """Labels grouped by, matched on, or shown in the legend (`{{status}}`)."""
    names = {
        name.strip()
        for group in GROUPING.findall(expr)
        for name in group.split(",")
        if name.strip()
    }
    for selector in SELECTOR.findall(expr):
        names |= set(MATCHER.findall(selector))
    return names | set(LEGEND.findall(legend))


def problems(
    expr: str,
    exposed: Mapping[str, Iterable[str]],
    *,
    legend: str = "",
    target_labels: Iterable[str] = (),
) -> list[str]:
    """Why `expr` would come back empty against the service's /metrics: unknown series, or
    labels that none of its series carry (nor Prometheus adds to every target)."""
    used = metric_names(expr)
    found: list[str] = []
    if not used:
        found.append(f"no actserve_ series in {expr!r}")
    unknown = sorted(used - set(exposed))
    found += [f"{name} is not exposed by /metrics (in {expr!r})" for name in unknown]
    available = set(target_labels).union(*(set(exposed[m]) for m in used if m in exposed))
    missing = sorted(label_names(expr, legend) - available)
    found += [f"label {name!r} is on none of {sorted(used)} (in {expr!r})" for name in missing]
    if "histogram_quantile" in expr:
        if not any(name.endswith("_bucket") for name in used):
            found.append(f"histogram_quantile over no _bucket series: {expr!r}")
        if not re.search(r"\bby\s*\([^)]*\ble\b", expr):
            found.append(f"histogram_quantile must keep `le`: {expr!r}")
    return found
