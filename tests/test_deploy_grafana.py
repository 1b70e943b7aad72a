"""deploy/grafana: the committed dashboard is the generator's output, queries only metrics
that streamer/metrics.py defines, and its provisioning points where the README installs it.

The queries are evaluated against a live Prometheus in tests/test_deploy_e2e.py; the
helpers :func:`dashboard_queries` and :func:`variable_queries` are shared with it.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml
from prometheus_client import CollectorRegistry

from streamer.metrics import Metrics

ROOT = Path(__file__).resolve().parents[1]
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "lstmad.json"
# PromQL functions, keywords and Grafana variables that look like identifiers in an expr.
NOT_METRICS = {
    "sum", "min", "max", "by", "rate", "increase", "histogram_quantile", "time", "le",
    "job", "instance", "status", "type", "severity", "stream", "topic", "partition",
    "reason", "result", "and", "or", "on", "group_left",
}  # fmt: skip


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "lstmad_dashboard", GRAFANA / "lstmad_dashboard.py"
    )
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target of every panel, in order."""
    return [(p["title"], t["expr"]) for p in dashboard()["panels"] for t in p.get("targets", [])]


def variable_queries() -> list[tuple[str, str]]:
    """(series selector, label) of every ``label_values(selector, label)`` variable."""
    out = []
    for v in dashboard()["templating"]["list"]:
        if v["type"] != "query":
            continue
        m = re.fullmatch(r"label_values\((.+), (\w+)\)", v["query"]["query"])
        assert m, f"variable {v['name']}: unsupported query {v['query']}"
        out.append((m[1], m[2]))
    return out


def exposed_names() -> set[str]:
    """Every sample name a daemon's registry can expose (with _bucket, _total, _info...)."""
    registry = CollectorRegistry()
    m = Metrics.create(registry, ["s"])
    m.model_info.info({"name": "x"})
    # Labelled children the daemon creates on first use (partitions, client operations).
    m.consumer_lag.labels("t", "0").set(0)
    m.kafka_errors.labels("poll").inc(0)
    names = {s.name for fam in registry.collect() for s in fam.samples}
    return names | {"up"}


def metrics_in(expr: str) -> set[str]:
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    without_ranges = re.sub(r"\[[^\]]*\]", "", without_strings)
    idents = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", without_ranges))
    return {i for i in idents if i not in NOT_METRICS and not i.startswith("__")}


def test_committed_dashboard_is_the_generators_output() -> None:
    assert DASHBOARD.read_text() == generator().render(), (
        "run: python deploy/grafana/lstmad_dashboard.py --write"
    )


def test_every_query_names_only_metrics_the_daemon_exposes() -> None:
    names = exposed_names()
    queries = dashboard_queries() + [(f"variable {sel}", sel) for sel, _ in variable_queries()]
    for title, expr in queries:
        unknown = metrics_in(expr) - names
        assert not unknown, f"panel {title!r} queries unknown metrics {unknown}: {expr}"


def test_metric_check_catches_a_typo() -> None:
    assert metrics_in('sum(rate(lstmad_point_total{job=~"$job"}[5m]))') - exposed_names() == {
        "lstmad_point_total"
    }


def test_dashboard_covers_what_operators_watch() -> None:
    text = " ".join(e for _, e in dashboard_queries())
    for metric in (
        "lstmad_prediction_error_bucket",
        "lstmad_alerts_total",
        "lstmad_points_total",
        "lstmad_inference_seconds_bucket",
        "lstmad_end_to_end_seconds_bucket",
        "lstmad_consumer_lag",
        "lstmad_invalid_messages_total",
        "lstmad_active_streams",
        "lstmad_model_info",
    ):
        assert metric in text, metric
    assert re.search(r"sum by \(type, severity\)", text), "alert rate by severity"


def test_panels_have_unique_ids_the_datasource_variable_and_no_overlap() -> None:
    panels = dashboard()["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells: set[tuple[int, int]] = set()
    for p in panels:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24
        box = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not box & cells, f"panel {p['title']!r} overlaps another"
        cells |= box
        if p["type"] != "row":
            assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert all('job=~"$job"' in t["expr"] for t in p["targets"])


def test_provisioning_points_at_the_installed_dashboard_folder() -> None:
    prov = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "lstmad.yaml").read_text())
    (provider,) = prov["providers"]
    assert prov["apiVersion"] == 1 and provider["type"] == "file"
    path = provider["options"]["path"]
    readme = (ROOT / "README.md").read_text()
    assert f"{path}/" in readme, "README must install lstmad.json where provisioning looks"
    ds = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yaml").read_text())
    assert ds["datasources"][0]["type"] == "prometheus"
