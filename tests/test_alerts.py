"""Alert, dead-letter and prediction documents: schema-valid, deterministic, lossless."""

from __future__ import annotations

import base64
import json

import jsonschema
import pytest

from streamer import alerts
from streamer.alerts import ModelRef, Source
from streamer.pipeline import Event

MODEL = ModelRef("ops-default", "1", "ab" * 32, "default")
VALIDATOR = jsonschema.Draft202012Validator(alerts.load_schema())


def event(**over: object) -> Event:
    fields: dict[str, object] = dict(
        type="anomaly",
        status="open",
        stream="web1.cpu",
        ts_ms=1_764_547_200_250,
        index=3,
        value=96.3,
        predicted=50.1,
        error=46.2,
        score=5.4,
        threshold=5.0,
        severity="critical",
        episode_start_ms=1_764_547_200_250,
    )
    fields.update(over)
    return Event(**fields)  # type: ignore[arg-type]


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(alerts.load_schema())


def test_alert_matches_the_schema_and_design_fields() -> None:
    doc = alerts.alert(event(), MODEL, Source("metrics", 2, 41), detected_at=1_764_547_201.5)
    VALIDATOR.validate(doc)
    assert doc["schema"] == "lstmad.alert/v1"
    assert (
        doc["ts"] == "2025-12-01T00:00:00.250Z" and doc["detected_at"] == "2025-12-01T00:00:01.500Z"
    )
    assert doc["source"] == {"topic": "metrics", "partition": 2, "offset": 41}
    assert doc["model"] == {
        "name": "ops-default",
        "version": "1",
        "sha256": "ab" * 32,
        "route": "default",
    }
    assert json.loads(alerts.encode(doc)) == doc


def test_alert_id_is_deterministic_and_distinguishes_transitions() -> None:
    a = alerts.alert(event(), MODEL, Source("metrics", 0, 1), 1.0)
    b = alerts.alert(event(), MODEL, Source("metrics", 3, 99), 2.0)  # re-delivery elsewhere
    assert a["alert_id"] == b["alert_id"] and alerts.content(a) == alerts.content(b)
    ids = {
        alerts.alert(event(**over), MODEL, None, 1.0)["alert_id"]
        for over in (
            {},
            {"status": "resolved", "ts_ms": 1_764_547_800_000},
            {"type": "volatility"},
            {"stream": "web2.cpu"},
            {"episode_start_ms": 1_764_547_200_251, "ts_ms": 1_764_547_200_251},
        )
    }
    assert len(ids) == 5
    other_model = ModelRef("ops-default", "2", "cd" * 32)
    assert alerts.alert(event(), other_model, None, 1.0)["alert_id"] not in ids


def test_non_finite_numbers_become_null_and_odd_streams_stay_valid() -> None:
    doc = alerts.alert(event(score=float("inf"), stream="ホスト\u202e.cpu"), MODEL, None, 1.0)
    VALIDATOR.validate(doc)
    assert doc["score"] is None and doc["source"] is None
    raw = alerts.encode(doc)
    raw.decode("ascii")  # escaped: any consumer can read it
    assert json.loads(raw)["stream"] == "ホスト\u202e.cpu"


def test_schema_rejects_what_it_should() -> None:
    doc = alerts.alert(event(), MODEL, None, 1.0)
    for bad in ({"type": "spike"}, {"severity": "info"}, {"alert_id": "x"}, {"extra": 1}):
        with pytest.raises(jsonschema.ValidationError):
            VALIDATOR.validate({**doc, **bad})


def test_dead_letter_keeps_the_original_bytes() -> None:
    src = Source("metrics", 1, 7)
    d = alerts.dead_letter("not_json", "not JSON", src, b"k", b'{"a": "\xc3\xa9"', 123, 1.0)
    assert d["payload"] == '{"a": "é"' and d["payload_encoding"] == "utf-8"
    assert d["source"] == {"topic": "metrics", "partition": 1, "offset": 7, "timestamp_ms": 123}
    assert d["key"] == "k" and not d["truncated"]
    raw = b"\xff\x00binary"
    d = alerts.dead_letter("not_json", "x", src, b"\xfe", raw, None, 1.0)
    assert base64.b64decode(d["payload"]) == raw and d["payload_encoding"] == "base64"
    assert base64.b64decode(d["key"]) == b"\xfe" and d["key_encoding"] == "base64"
    d = alerts.dead_letter("not_json", "x", src, None, None, None, 1.0)
    assert d["payload"] is None and d["payload_encoding"] == "none" and d["key"] is None
    json.loads(alerts.encode(d))


def test_huge_dead_letters_are_cut_but_say_so() -> None:
    big = ("é" * alerts.MAX_DLQ_PAYLOAD).encode()
    d = alerts.dead_letter("too_large", "x", Source("m", 0, 0), None, big, None, 1.0)
    assert d["truncated"] and d["payload_bytes"] == len(big)
    assert base64.b64decode(d["payload"]) == big[: alerts.MAX_DLQ_PAYLOAD]


def test_prediction_record() -> None:
    p = alerts.prediction("s", 1_764_547_200_000, 1.5, 2.0, 0.5, 1.25, MODEL)
    assert p["schema"] == "lstmad.prediction/v1" and p["ts"] == "2025-12-01T00:00:00.000Z"
    assert (p["predicted"], p["actual"], p["error"], p["norm_error"]) == (1.5, 2.0, 0.5, 1.25)
