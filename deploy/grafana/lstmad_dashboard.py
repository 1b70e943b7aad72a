"""The lstmad Grafana dashboard as code: ``python deploy/grafana/lstmad_dashboard.py --write``.

Builds the dashboard JSON (Grafana schema 39) from plain Python data, so that every PromQL
expression is visible in one list and reviewable in a diff. The committed
``dashboards/lstmad.json`` must equal this module's output (checked by
tests/test_deploy_grafana.py), and every expression is evaluated against a real Prometheus
scraping a real daemon (tests/test_deploy_e2e.py). No library: the JSON model is small and
stable, and a generator without dependencies cannot break on a library's epoch bump.

Template variables: ``datasource`` (a Prometheus data source), ``job`` and ``instance``
(multi-select, "All" = ``.*``). Every query selects ``job=~"$job", instance=~"$instance"``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "dashboards" / "lstmad.json"
UID = "lstmad-overview"
DS = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'job=~"$job", instance=~"$instance"'
RI = "$__rate_interval"
ALERTS = "lstmad_alerts_total"
RELOADS = "lstmad_model_reloads_total"


Query = tuple[str, str]  # (legend, PromQL)


def quantile(q: float, metric: str, by: str = "le") -> str:
    return f"histogram_quantile({q}, sum by ({by}) (rate({metric}_bucket{{{SEL}}}[{RI}])))"


def quantiles(metric: str, qs: tuple[float, ...] = (0.5, 0.9, 0.99)) -> tuple[Query, ...]:
    return tuple((f"p{round(q * 100)}", quantile(q, metric)) for q in qs)


def summed(metric: str, by: str = "", match: str = "", fn: str = "rate", window: str = RI) -> str:
    """``sum [by (..)] (fn(metric{job, instance[, match]}[window]))``."""
    sel = f"{SEL}, {match}" if match else SEL
    return f"sum{f' by ({by}) ' if by else ''}({fn}({metric}{{{sel}}}[{window}]))"


@dataclass(frozen=True)
class Panel:
    """One panel: a title, its queries as (legend, PromQL) pairs, a type, a unit and a width."""

    title: str
    queries: tuple[Query, ...]
    kind: str = "timeseries"  # timeseries | stat | table | heatmap
    unit: str = "short"
    width: int = 12
    height: int = 8
    description: str = ""
    target_options: dict[str, Any] = field(default_factory=dict)  # extra keys per query


def ts(title: str, *queries: Query, **kw: Any) -> Panel:
    """A time-series panel; keyword arguments as for :class:`Panel`."""
    return Panel(title, queries, **kw)


def stat(title: str, expr: str, unit: str = "short", description: str = "") -> Panel:
    return Panel(title, (("", expr),), "stat", unit, width=4, height=4, description=description)


ROWS: tuple[tuple[str, tuple[Panel, ...]], ...] = (
    (
        "Health",
        (
            stat("Targets up", f"sum(up{{{SEL}}})"),
            stat(
                "Ready",
                f"min(lstmad_ready{{{SEL}}})",
                description="1 when assigned, model loaded and broker reachable (min over pods).",
            ),
            stat(
                "Loop age",
                f"max(time() - lstmad_last_loop_timestamp_seconds{{{SEL}}})",
                "s",
                "Seconds since the slowest pod's loop last turned.",
            ),
            stat("Active streams", f"sum(lstmad_active_streams{{{SEL}}})"),
            Panel(
                "Model",
                (("", f"lstmad_model_info{{{SEL}}}"),),
                "table",
                width=8,
                height=4,
                description="Labels of lstmad_model_info: the model serving on each pod.",
            ),
        ),
    ),
    (
        "Prediction error",
        (
            ts(
                "Prediction error quantiles (normalised units)",
                *quantiles("lstmad_prediction_error"),
                description="|actual - predicted| / window scale; 1.0 is one typical swing.",
            ),
            ts(
                "Mean prediction error",
                (
                    "mean",
                    f"{summed('lstmad_prediction_error_sum')} / "
                    f"{summed('lstmad_prediction_error_count')}",
                ),
            ),
            ts(
                "Prediction error distribution",
                ("{{le}}", summed("lstmad_prediction_error_bucket", "le", fn="increase")),
                kind="heatmap",
                target_options={"format": "heatmap"},
            ),
            ts(
                "p90 error of labelled streams",
                ("{{stream}}", quantile(0.9, "lstmad_stream_prediction_error", "le, stream")),
                description="Only the streams listed in [metrics] stream_labels.",
            ),
        ),
    ),
    (
        "Alerts",
        (
            ts(
                "Alerts opened by type and severity",
                ("{{type}} {{severity}}", summed(ALERTS, "type, severity", 'status="open"')),
                unit="ops",
            ),
            ts(
                "Alerts resolved by type",
                ("{{type}}", summed(ALERTS, "type", 'status="resolved"')),
                unit="ops",
            ),
        ),
    ),
    (
        "Throughput and latency",
        (
            ts(
                "Throughput",
                ("points/s", summed("lstmad_points_total")),
                ("predictions/s", summed("lstmad_predictions_total")),
                unit="ops",
            ),
            ts("Streams per inference call", *quantiles("lstmad_batch_streams", (0.5, 0.99))),
            ts(
                "Inference latency (one batched ONNX Runtime call)",
                *quantiles("lstmad_inference_seconds"),
                unit="s",
            ),
            ts(
                "End-to-end latency (point produced to alert acknowledged)",
                *quantiles("lstmad_end_to_end_seconds"),
                unit="s",
            ),
        ),
    ),
    (
        "Kafka and model",
        (
            ts(
                "Consumer lag by partition",
                (
                    "{{topic}}/{{partition}}",
                    f"sum by (topic, partition) (lstmad_consumer_lag{{{SEL}}})",
                ),
            ),
            ts(
                "Invalid messages by reason",
                ("{{reason}}", summed("lstmad_invalid_messages_total", "reason")),
                unit="ops",
            ),
            ts(
                "Offset commits by result",
                ("{{result}}", summed("lstmad_offset_commits_total", "result")),
                unit="ops",
            ),
            ts(
                "Model (re)loads by result, last hour",
                ("{{result}}", summed(RELOADS, "result", fn="increase", window="1h")),
            ),
            ts(
                "Stream state: evicted and restored",
                ("evicted/s", summed("lstmad_evicted_streams_total")),
                ("restored/s", summed("lstmad_state_restored_streams_total")),
                unit="ops",
            ),
        ),
    ),
)


def _panel(p: Panel, pid: int, x: int, y: int) -> dict[str, Any]:
    instant = p.kind in ("stat", "table")
    targets = [
        {
            "datasource": DS,
            "refId": chr(ord("A") + i),
            "expr": expr,
            "legendFormat": legend or "__auto",
            "instant": instant,
            "range": not instant,
            **({"format": "table"} if p.kind == "table" else {}),
            **p.target_options,
        }
        for i, (legend, expr) in enumerate(p.queries)
    ]
    panel: dict[str, Any] = {
        "id": pid,
        "type": p.kind,
        "title": p.title,
        "description": p.description,
        "datasource": DS,
        "gridPos": {"h": p.height, "w": p.width, "x": x, "y": y},
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": p.unit}, "overrides": []},
        "options": {},
    }
    if p.kind == "table":
        panel["transformations"] = [
            {"id": "organize", "options": {"excludeByName": {"Time": True, "Value": True}}}
        ]
    if p.kind == "heatmap":
        panel["options"] = {"calculate": False, "yAxis": {"unit": "short"}}
    return panel


def _variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "query": {"query": query, "refId": f"{name}-var"},
        "definition": query,
        "refresh": 2,
        "multi": True,
        "includeAll": True,
        "allValue": ".*",
        "current": {"text": "All", "value": "$__all"},
        "sort": 1,
    }


def build() -> dict[str, Any]:
    """The whole dashboard as a JSON-ready dict; deterministic (ids and positions by order)."""
    panels: list[dict[str, Any]] = []
    pid, y = 1, 0
    for title, row in ROWS:
        panels.append(
            {
                "id": pid,
                "type": "row",
                "title": title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        pid, y, x, line_h = pid + 1, y + 1, 0, 0
        for p in row:
            if x + p.width > 24:
                x, y, line_h = 0, y + line_h, 0
            panels.append(_panel(p, pid, x, y))
            pid, x, line_h = pid + 1, x + p.width, max(line_h, p.height)
        y += line_h
    return {
        "uid": UID,
        "title": "lstmad",
        "description": "Streaming anomaly detection: prediction error, alerts, throughput, "
        "latency, Kafka lag, invalid input, model. Generated by lstmad_dashboard.py.",
        "tags": ["lstmad", "kafka", "anomaly-detection"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "graphTooltip": 1,
        "refresh": "30s",
        "time": {"from": "now-3h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                },
                _variable("job", "Job", "label_values(lstmad_ready, job)"),
                _variable(
                    "instance", "Instance", 'label_values(lstmad_ready{job=~"$job"}, instance)'
                ),
            ]
        },
        "annotations": {"list": []},
        "links": [],
        "panels": panels,
    }


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help=f"write {OUT.name} instead of stdout")
    ap.add_argument("--check", action="store_true", help=f"exit 1 if {OUT.name} is stale")
    args = ap.parse_args(argv)
    text = render()
    if args.check:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT} is stale: run {Path(__file__).name} --write", file=sys.stderr)
            return 1
        return 0
    if args.write:
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(text)
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
