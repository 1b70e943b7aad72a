"""Every Prometheus metric lstmad exposes: names, help texts, label sets and buckets, in one place.

Metrics are an API (Grafana dashboards and alerting rules in ``deploy/`` query these names),
so nothing else in the code base creates a metric. Units are seconds; counters end in
``_total``; label values are bounded: no per-stream label except for the streams listed in
config (``[metrics] stream_labels``, capped at :data:`MAX_LABELLED_STREAMS`).
The registry is passed in, never global, so tests get their own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

PREFIX = "lstmad"
MAX_LABELLED_STREAMS = 100

# |actual - predicted| / scale (see windows.error_scale): 1.0 is "one typical window swing".
# Dense below 3, where thresholds live, sparse above for the tails of real anomalies.
ERROR_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 20.0, 50.0)
# One batched session.run: ~50 us for a handful of streams, tens of ms for thousands.
INFERENCE_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
)
# Produce time of a point to the produce of its prediction/alert: poll wait dominates.
E2E_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Reading a state partition from its start: sub-second for thousands of streams.
RESTORE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 50000)

ALERT_TYPES = ("anomaly", "volatility")
ALERT_STATUSES = ("open", "resolved")
SEVERITIES = ("warning", "critical")
# Bounded reasons for invalid (dead-lettered) messages; decode code maps every failure to one.
INVALID_REASONS = (
    "not_json",
    "not_object",
    "too_large",
    "missing_stream",
    "missing_value",
    "bad_value",
    "non_finite",
    "unknown_feature",
    "missing_feature",
    "bad_timestamp",
    "out_of_order",
    "timestamp_out_of_range",
    "stream_limit",
    "other",
)


@dataclass(frozen=True)
class Metrics:
    points: Counter
    predictions: Counter
    alerts: Counter
    invalid: Counter
    prediction_error: Histogram
    stream_prediction_error: Histogram
    inference_seconds: Histogram
    end_to_end_seconds: Histogram
    batch_streams: Histogram
    active_streams: Gauge
    evicted_streams: Counter
    consumer_lag: Gauge
    model_info: Info
    model_reloads: Counter
    last_loop: Gauge
    ready: Gauge
    commits: Counter
    kafka_errors: Counter
    state_restored: Counter
    state_checkpoints: Counter
    state_restore_seconds: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry, labelled_streams: Iterable[str] = ()) -> Metrics:
        streams = tuple(labelled_streams)
        if len(streams) > MAX_LABELLED_STREAMS:
            raise ValueError(
                f"[metrics] stream_labels lists {len(streams)} streams; at most "
                f"{MAX_LABELLED_STREAMS} may carry a per-stream label"
            )
        p, r = PREFIX, registry
        m = cls(
            points=Counter(
                f"{p}_points", "Valid points consumed from the input topic.", registry=r
            ),
            predictions=Counter(f"{p}_predictions", "Next-point predictions made.", registry=r),
            alerts=Counter(
                f"{p}_alerts",
                "Alert events published, by type, status and severity.",
                ["type", "status", "severity"],
                registry=r,
            ),
            invalid=Counter(
                f"{p}_invalid_messages",
                "Messages dead-lettered as unusable, by reason.",
                ["reason"],
                registry=r,
            ),
            prediction_error=Histogram(
                f"{p}_prediction_error",
                "Absolute prediction error in normalised units "
                "(|actual - predicted| / window scale).",
                buckets=ERROR_BUCKETS,
                registry=r,
            ),
            stream_prediction_error=Histogram(
                f"{p}_stream_prediction_error",
                "Normalised prediction error for the streams listed in [metrics] stream_labels.",
                ["stream"],
                buckets=ERROR_BUCKETS,
                registry=r,
            ),
            inference_seconds=Histogram(
                f"{p}_inference_seconds",
                "Duration of one batched ONNX Runtime call.",
                buckets=INFERENCE_BUCKETS,
                registry=r,
            ),
            end_to_end_seconds=Histogram(
                f"{p}_end_to_end_seconds",
                "From a point's Kafka timestamp to the broker's ack of the outputs it caused.",
                buckets=E2E_BUCKETS,
                registry=r,
            ),
            batch_streams=Histogram(
                f"{p}_batch_streams",
                "Streams scored in one inference call.",
                buckets=BATCH_BUCKETS,
                registry=r,
            ),
            active_streams=Gauge(f"{p}_active_streams", "Streams with live state.", registry=r),
            evicted_streams=Counter(
                f"{p}_evicted_streams",
                "Idle streams evicted to respect [detect] max_streams.",
                registry=r,
            ),
            consumer_lag=Gauge(
                f"{p}_consumer_lag",
                "Messages behind the partition's high watermark.",
                ["topic", "partition"],
                registry=r,
            ),
            model_info=Info(f"{p}_model", "The model serving each route.", registry=r),
            model_reloads=Counter(
                f"{p}_model_reloads", "Model (re)loads, by result.", ["result"], registry=r
            ),
            last_loop=Gauge(
                f"{p}_last_loop_timestamp_seconds",
                "Unix time of the last loop iteration.",
                registry=r,
            ),
            ready=Gauge(
                f"{p}_ready", "1 when assigned, model loaded and broker reachable.", registry=r
            ),
            commits=Counter(
                f"{p}_offset_commits", "Offset commits, by result.", ["result"], registry=r
            ),
            kafka_errors=Counter(
                f"{p}_kafka_errors", "Kafka client errors, by operation.", ["operation"], registry=r
            ),
            state_restored=Counter(
                f"{p}_state_restored_streams",
                "Stream states restored from the state topic after an assignment.",
                registry=r,
            ),
            state_checkpoints=Counter(
                f"{p}_state_checkpoints",
                "Stream state records written to the state topic (tombstones included).",
                registry=r,
            ),
            state_restore_seconds=Histogram(
                f"{p}_state_restore_seconds",
                "Time to restore the states of newly assigned partitions.",
                buckets=RESTORE_BUCKETS,
                registry=r,
            ),
        )
        # Pre-create bounded label children so every series exists from the first scrape.
        for t in ALERT_TYPES:
            for s in ALERT_STATUSES:
                for sev in SEVERITIES:
                    m.alerts.labels(t, s, sev)
        for reason in INVALID_REASONS:
            m.invalid.labels(reason)
        for result in ("ok", "refused"):
            m.model_reloads.labels(result)
        for result in ("ok", "failed"):
            m.commits.labels(result)
        for s in streams:
            m.stream_prediction_error.labels(s)
        return m
