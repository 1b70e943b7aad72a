"""The small statistics the throughput benchmark computes from what the daemon exposes."""

from __future__ import annotations

import math

import pytest

from bench.daemon_proc import histogram_buckets, parse_metrics
from bench.kafka_load import quantile, rate_10_90

EXPOSITION = """\
# HELP lstmad_end_to_end_seconds From a point's Kafka timestamp to the broker's ack.
# TYPE lstmad_end_to_end_seconds histogram
lstmad_end_to_end_seconds_bucket{le="0.01"} 10.0
lstmad_end_to_end_seconds_bucket{le="0.1"} 90.0
lstmad_end_to_end_seconds_bucket{le="1.0"} 100.0
lstmad_end_to_end_seconds_bucket{le="+Inf"} 100.0
lstmad_end_to_end_seconds_count 100.0
lstmad_points_total 1234.0
lstmad_invalid_messages_total{reason="not_json"} 3.0
"""


def test_exposition_is_parsed_into_samples_and_cumulative_buckets() -> None:
    s = parse_metrics(EXPOSITION)
    assert s["lstmad_points_total"] == 1234.0
    assert s['lstmad_invalid_messages_total{reason="not_json"}'] == 3.0
    b = histogram_buckets(s, "lstmad_end_to_end_seconds")
    assert b == {0.01: 10.0, 0.1: 90.0, 1.0: 100.0, math.inf: 100.0}


def test_quantile_interpolates_linearly_inside_the_bucket() -> None:
    b = {0.01: 10.0, 0.1: 90.0, 1.0: 100.0, math.inf: 100.0}
    # rank 50 lies in (0.01, 0.1] holding ranks 10..90: 0.01 + 0.09 * 40/80
    assert quantile(b, 0.5) == pytest.approx(0.055)
    # rank 99 lies in (0.1, 1.0] holding ranks 90..100: 0.1 + 0.9 * 9/10
    assert quantile(b, 0.99) == pytest.approx(0.91)
    assert quantile(b, 0.05) == pytest.approx(0.005)  # first bucket starts at 0
    assert math.isnan(quantile({1.0: 0.0, math.inf: 0.0}, 0.5))


def test_quantile_in_the_open_bucket_is_its_lower_bound() -> None:
    assert quantile({0.1: 50.0, math.inf: 100.0}, 0.99) == 0.1


def test_rate_is_measured_between_the_10_and_90_percent_samples() -> None:
    samples = [(0.0, 0.0), (1.0, 5.0), (2.0, 20.0), (3.0, 60.0), (4.0, 95.0), (5.0, 100.0)]
    # 10% of 100 first reached at t=2 (20), 90% at t=4 (95): 75 points in 2 s
    assert rate_10_90(samples, 100) == pytest.approx(37.5)
    with pytest.raises(RuntimeError, match="too few progress samples"):
        rate_10_90([(0.0, 0.0), (1.0, 100.0)], 100)
