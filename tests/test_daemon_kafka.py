"""`lstmad serve` against the real broker: anomalies, quiet streams, dead letters, replay parity.

One daemon process (``python -m streamer serve``) scores ten streams on a 4-partition topic:
two each with a spike, a dip, a level shift, a volatility regime and nothing (see the
timeline in ``tests/daemon_support.py``), mixed with one of each kind of bad message. The
module fixture runs it once; each test checks one promise of DESIGN.md on the result.
"""

from __future__ import annotations

import collections
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from streamer import alerts
from tests import daemon_support as ds

NOW = str(int(time.time() * 1000) - 86_400_000).encode()
BAD: list[tuple[bytes | None, bytes | None, str]] = [
    (b"x", b"{not json", "not_json"),
    (b"x", b"[1, 2, 3]", "not_object"),
    (b"x", b'{"stream": "bad.nan", "ts": ' + NOW + b', "value": NaN}', "non_finite"),
    (b"x", b'{"stream": "bad.none", "ts": ' + NOW + b"}", "missing_value"),
    (b"x", b'{"stream": "bad.str", "ts": ' + NOW + b', "value": "1.5"}', "bad_value"),
    (b"x", b'{"stream": "bad.feat", "ts": ' + NOW + b', "values": {"cpu": 1}}', "unknown_feature"),
    (b"x", b'{"stream": "bad.ts", "ts": "yesterday", "value": 1}', "bad_timestamp"),
    (b"x", b'{"stream": "bad.future", "ts": 99999999999999, "value": 1}', "timestamp_out_of_range"),
    (None, b'{"ts": ' + NOW + b', "value": 1}', "missing_stream"),
    (b"x", b'{"stream": "bad.big", "pad": "' + b"x" * 70_000 + b'"}', "too_large"),
    (b"\xff", b"\xff\xfe binary", "not_json"),
]


@pytest.fixture(scope="module")
def run(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("daemon")
    base = f"dk-{uuid.uuid4().hex[:8]}"
    topics = ds.topics_for(base)
    ds.create_topics(
        kafka_bootstrap,
        {topics["input_topic"]: 4, topics["alert_topic"]: 1, topics["dlq_topic"]: 1},
    )
    streams = ds.make_streams(ds.KINDS * 2, "k")
    feed = ds.interleave(streams)
    # Bad messages spread through the feed, plus one out-of-order repeat of a real point.
    messages: list[tuple[bytes | None, bytes | None]] = list(feed)
    for j, (k, v, _) in enumerate(BAD):
        messages.insert(300 + 250 * j, (k, v))
    late = streams[0]
    messages.insert(2000, (late.name.encode(), late.message(100)))
    expected_reasons = collections.Counter([r for *_, r in BAD] + ["out_of_order"])
    data = tmp / "feed.jsonl"
    data.write_bytes(b"".join(v + b"\n" for k, v in messages if v is not None and k is not None))
    port = ds.new_port()
    config = ds.write_config(tmp / "lstmad.toml", kafka_bootstrap, topics, port)
    with ds.daemon(config, port, tmp / "daemon.log") as d:
        d.wait_ready(partitions=4)
        ds.produce(kafka_bootstrap, topics["input_topic"], messages)
        anomalous = [s for s in streams if s.kind != "normal"]

        def done(docs: list[dict[str, Any]]) -> bool:
            return all(
                ds.episode_ok(docs, s, "volatility" if s.kind == "volatility" else "anomaly")
                for s in anomalous
            )

        docs = ds.read_topic(kafka_bootstrap, topics["alert_topic"], done, 90, settle_s=2.0)
        dead = ds.read_topic(
            kafka_bootstrap,
            topics["dlq_topic"],
            lambda xs: len(xs) >= sum(expected_reasons.values()),
            60,
            settle_s=1.0,
        )
        deadline = time.monotonic() + 30
        good = len(feed)
        while time.monotonic() < deadline and d.metric("lstmad_points_total") < good:
            time.sleep(0.2)
        metrics_text = d.get("/metrics")[1]
        points = d.metric("lstmad_points_total")
        code, took = d.stop()
        log = d.tail(20_000)
    return {
        "streams": streams,
        "alerts": docs,
        "dead": dead,
        "expected_reasons": expected_reasons,
        "points": points,
        "good": good,
        "metrics": metrics_text,
        "exit": code,
        "stop_s": took,
        "log": log,
        "config": config,
        "data": data,
        "topics": topics,
    }


def _kind(run: dict[str, Any], kind: str) -> list[ds.Stream]:
    return [s for s in run["streams"] if s.kind == kind]


@pytest.mark.parametrize("kind", ["spike", "dip", "level_shift"])
def test_injected_anomaly_opens_and_resolves_on_the_right_stream(
    run: dict[str, Any], kind: str
) -> None:
    for s in _kind(run, kind):
        assert ds.episode_ok(run["alerts"], s), (
            s.name,
            [a for a in run["alerts"] if a["stream"] == s.name],
        )


def test_volatility_regime_change_opens_a_volatility_alert(run: dict[str, Any]) -> None:
    for s in _kind(run, "volatility"):
        vol = ds.opens(run["alerts"], s.name, "volatility")
        assert vol and s.ts(ds.AT) <= vol[0]["ts_ms"] <= s.ts(ds.AT + 40), vol


def test_normal_data_gives_no_alerts_and_episodes_do_not_storm(run: dict[str, Any]) -> None:
    quiet = {s.name for s in _kind(run, "normal")}
    assert [a for a in run["alerts"] if a["stream"] in quiet] == []
    # One episode per injection, no storm while it lasts. (A volatility regime may also
    # produce a few anomaly episodes: its outliers are anomalous points too.)
    for s in run["streams"]:
        if s.kind in ("spike", "dip", "level_shift"):
            assert len(ds.opens(run["alerts"], s.name)) == 1, s.name
        elif s.kind == "volatility":
            assert len(ds.opens(run["alerts"], s.name, "volatility")) == 1, s.name


def test_alerts_follow_the_schema_and_are_delivered_once(run: dict[str, Any]) -> None:
    validator = jsonschema.Draft202012Validator(alerts.load_schema())
    for a in run["alerts"]:
        validator.validate(a)
        assert a["source"]["topic"] == run["topics"]["input_topic"]
    ids = [a["alert_id"] for a in run["alerts"]]
    assert len(ids) == len(set(ids))


def test_bad_messages_are_dead_lettered_with_reason_and_good_ones_scored(
    run: dict[str, Any],
) -> None:
    dead = run["dead"]
    assert collections.Counter(d["reason"] for d in dead) == run["expected_reasons"]
    for d in dead:
        assert d["schema"] == "lstmad.dead_letter/v1"
        assert d["source"]["topic"] == run["topics"]["input_topic"]
        assert 0 <= d["source"]["partition"] < 4 and d["source"]["offset"] >= 0
    binary = [d for d in dead if d["payload_encoding"] == "base64" and not d["truncated"]]
    assert binary and binary[0]["key_encoding"] == "base64"
    assert run["points"] == run["good"]
    text = run["metrics"]
    assert 'lstmad_invalid_messages_total{reason="out_of_order"} 1.0' in text
    assert 'lstmad_invalid_messages_total{reason="not_json"} 2.0' in text


def test_metrics_report_the_run(run: dict[str, Any]) -> None:
    text = run["metrics"]
    assert "lstmad_active_streams 10.0" in text
    assert "lstmad_predictions_total" in text and "lstmad_inference_seconds_count" in text
    assert 'lstmad_alerts_total{severity="critical",status="open",type="anomaly"}' in text
    assert 'lstmad_offset_commits_total{result="ok"}' in text
    assert 'lstmad_model_info{default_name="ops-default"' in text


def test_sigterm_exits_zero_quickly_after_committing(run: dict[str, Any]) -> None:
    assert run["exit"] == 0, run["log"]
    assert run["stop_s"] < 15.0
    assert "last batch delivered and committed" in run["log"]
    assert '"level": "ERROR", "logger": "lstmad' not in run["log"]


def test_replay_gives_the_same_alerts_as_kafka(run: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "alerts.jsonl"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "streamer",
            "replay",
            str(run["data"]),
            "--config",
            str(run["config"]),
            "--output",
            str(out),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    replayed = [json.loads(line) for line in out.read_text().splitlines()]

    def key(a: dict[str, Any]) -> tuple[Any, ...]:
        return (a["stream"], a["ts_ms"], a["type"], a["status"])

    kafka = sorted((alerts.content(a) for a in run["alerts"]), key=key)
    file = sorted((alerts.content(a) for a in replayed), key=key)
    assert file == kafka
