"""The decoder never raises: any bytes end as a Point or a bounded reason (hypothesis + fuzz)."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamer.decode import (
    MAX_ABS_VALUE,
    MAX_STREAM_CHARS,
    Invalid,
    Limits,
    Point,
    decode,
    decode_object,
    parse_ts,
)
from streamer.metrics import INVALID_REASONS

NOW_MS = 1_764_547_200_000  # 2025-12-01T00:00:00Z
LIMITS = Limits(max_bytes=4096, max_age_ms=86_400_000, max_ahead_ms=300_000)


def one(_: str) -> tuple[str, ...]:
    return ("value",)


def two(_: str) -> tuple[str, ...]:
    return ("close", "volume")


def dec(obj: Any, key: bytes | None = None, features: Any = one) -> Point | Invalid:
    raw = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return decode(raw, key, features, LIMITS, NOW_MS)


def reason(obj: Any, **kw: Any) -> str:
    r = dec(obj, **kw)
    assert isinstance(r, Invalid), r
    assert r.reason in INVALID_REASONS and len(r.detail) <= 200
    return r.reason


def test_both_documented_formats() -> None:
    p = dec({"stream": "host1.cpu", "ts": "2025-11-30T23:00:00Z", "value": 0.42})
    assert p == Point("host1.cpu", NOW_MS - 3_600_000, (0.42,))
    p = dec(
        {"stream": "AAPL", "ts": NOW_MS, "values": {"volume": 51200, "close": 189.2}}, features=two
    )
    assert p == Point("AAPL", NOW_MS, (189.2, 51200.0))  # model feature order, not message order


def test_stream_falls_back_to_the_key_and_extra_fields_are_ignored() -> None:
    p = dec({"ts": NOW_MS, "value": 1, "labels": {"dc": "x"}}, key=b"k1")
    assert isinstance(p, Point) and p.stream == "k1"
    assert reason({"ts": NOW_MS, "value": 1}) == "missing_stream"
    assert reason({"ts": NOW_MS, "value": 1}, key=b"\xff\xfe") == "missing_stream"


@pytest.mark.parametrize(
    ("ts", "ms"),
    [
        ("2025-12-01T00:00:00Z", NOW_MS),
        ("2025-12-01T00:00:00.250Z", NOW_MS + 250),
        ("2025-12-01T01:00:00+01:00", NOW_MS),
        ("2025-11-30t23:59:59.999999999z", NOW_MS - 1),
        (NOW_MS, NOW_MS),
        (float(NOW_MS) + 0.7, NOW_MS),
    ],
)
def test_timestamps(ts: Any, ms: int) -> None:
    assert parse_ts(ts) == ms


@pytest.mark.parametrize(
    "ts",
    [
        "2025-12-01",
        "2025-12-01T00:00:00",
        "yesterday",
        "2025-13-01T00:00:00Z",
        True,
        None,
        [1],
        "２０２５-12-01T00:00:00Z",
        -1,
        10**20,
        float("nan"),
        "2025-12-01T00:00:00Z" + " " * 50,
    ],
)
def test_bad_timestamps(ts: Any) -> None:
    assert isinstance(parse_ts(ts), Invalid)
    assert reason({"stream": "s", "ts": ts, "value": 1}) == "bad_timestamp"


def test_far_past_and_future_are_out_of_range() -> None:
    assert (
        reason({"stream": "s", "ts": NOW_MS - 86_400_001, "value": 1}) == "timestamp_out_of_range"
    )
    assert reason({"stream": "s", "ts": NOW_MS + 300_001, "value": 1}) == "timestamp_out_of_range"
    assert (
        reason({"stream": "s", "ts": "1970-01-01T00:00:00Z", "value": 1})
        == "timestamp_out_of_range"
    )
    assert (
        reason({"stream": "s", "ts": "9999-12-31T23:59:59Z", "value": 1})
        == "timestamp_out_of_range"
    )
    off = Limits(max_bytes=4096, max_age_ms=0, max_ahead_ms=0)
    assert isinstance(decode(b'{"stream":"s","ts":0,"value":1}', None, one, off, NOW_MS), Point)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"", "not_json"),
        (b"{", "not_json"),
        (b"\xff\xfe\x00", "not_json"),
        (b"[1, 2]", "not_object"),
        (b"42", "not_object"),
        (b'"x"', "not_object"),
        (b"null", "not_object"),
        (b'{"stream": "s", "ts": 1764547200000}', "missing_value"),
        (b'{"stream": "s", "ts": 1764547200000, "value": NaN}', "non_finite"),
        (b'{"stream": "s", "ts": 1764547200000, "value": -Infinity}', "non_finite"),
        (b'{"stream": "s", "ts": 1764547200000, "value": 1e400}', "non_finite"),
        (b'{"stream": "s", "ts": 1764547200000, "value": 1e300}', "bad_value"),
        (b'{"stream": "s", "ts": 1764547200000, "value": "0.5"}', "bad_value"),
        (b'{"stream": "s", "ts": 1764547200000, "value": true}', "bad_value"),
        (b'{"stream": "s", "ts": 1764547200000, "value": null}', "bad_value"),
        (b'{"stream": "s", "ts": 1764547200000, "value": 1, "values": {}}', "bad_value"),
        (
            b'{"stream": "s", "ts": 1764547200000, "values": {"value": 1, "x": 2}}',
            "unknown_feature",
        ),
        (b'{"stream": "s", "ts": 1764547200000, "values": {}}', "missing_feature"),
        (b'{"stream": "s", "ts": 1764547200000, "values": [1]}', "bad_value"),
        (b'{"stream": "", "ts": 1764547200000, "value": 1}', "missing_stream"),
        (b'{"stream": 7, "ts": 1764547200000, "value": 1}', "missing_stream"),
        (b'{"stream": "a\\u0000b", "ts": 1764547200000, "value": 1}', "missing_stream"),
        (b'{"stream": "\\ud800", "ts": 1764547200000, "value": 1}', "missing_stream"),
        (b"[" * 3000 + b"]" * 3000, "too_large"),
        (b" " * 4097, "too_large"),
    ],
)
def test_each_failure_has_its_reason(raw: bytes, why: str) -> None:
    assert reason(raw) == why


def test_value_shorthand_needs_a_one_feature_model() -> None:
    assert reason({"stream": "s", "ts": NOW_MS, "value": 1}, features=two) == "missing_feature"
    assert reason({"stream": "s", "ts": NOW_MS, "values": {"close": 1}}, features=two) == (
        "missing_feature"
    )


def test_limits_on_size_nesting_and_stream_length() -> None:
    deep = b"[" * 2000 + b"]" * 2000
    assert decode(deep, None, one, Limits(max_bytes=10**6), NOW_MS).reason in (
        "not_json",
        "not_object",
    )  # type: ignore[union-attr]
    huge_int = b'{"stream": "s", "ts": 1764547200000, "value": ' + b"9" * 5000 + b"}"
    assert decode(huge_int, None, one, Limits(max_bytes=10**6), NOW_MS).reason == "not_json"  # type: ignore[union-attr]
    deeper = b"[" * 200_000 + b"]" * 200_000
    assert decode(deeper, None, one, Limits(max_bytes=10**6), NOW_MS).reason == "not_json"  # type: ignore[union-attr]
    assert reason({"stream": "x" * (MAX_STREAM_CHARS + 1), "ts": NOW_MS, "value": 1}) == (
        "missing_stream"
    )
    assert reason({"stream": "s", "ts": NOW_MS, "value": MAX_ABS_VALUE * 10}) == "bad_value"
    assert decode(None, b"k", one, LIMITS, NOW_MS) == Invalid(
        "not_json", "empty message (tombstone)"
    )


def test_odd_unicode_stream_ids_that_are_valid_are_kept() -> None:
    for s in ("こんにちは.cpu", "emoji🔥", "zero\u200bwidth", "rtl\u202e", "é" * MAX_STREAM_CHARS):
        p = dec({"stream": s, "ts": NOW_MS, "value": 1.5})
        assert isinstance(p, Point) and p.stream == s
        p.stream.encode("utf-8")  # always encodable as a Kafka key


def check_outcome(r: Point | Invalid, features: tuple[str, ...]) -> None:
    if isinstance(r, Invalid):
        assert r.reason in INVALID_REASONS and isinstance(r.detail, str) and len(r.detail) <= 200
        return
    assert isinstance(r.stream, str) and 0 < len(r.stream) <= MAX_STREAM_CHARS
    r.stream.encode("utf-8")
    assert NOW_MS - LIMITS.max_age_ms <= r.ts_ms <= NOW_MS + LIMITS.max_ahead_ms
    assert len(r.values) == len(features)
    assert all(math.isfinite(v) and abs(v) <= MAX_ABS_VALUE for v in r.values)


json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
)
json_any = st.recursive(
    json_leaf,
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=10), kids, max_size=4)
    ),
    max_leaves=20,
)
ts_any = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=NOW_MS - 10**8, max_value=NOW_MS + 10**6),
    st.floats(),
    st.datetimes().map(lambda d: d.isoformat() + "Z"),
    st.text(max_size=30),
    json_any,
)
value_any = st.one_of(st.floats(), st.integers(min_value=-(10**30), max_value=10**30), json_any)
message = st.fixed_dictionaries(
    {},
    optional={
        "stream": st.one_of(st.text(max_size=300), json_any),
        "ts": ts_any,
        "value": value_any,
        "values": st.one_of(
            st.dictionaries(
                st.sampled_from(["close", "volume", "value", "x"]), value_any, max_size=3
            ),
            json_any,
        ),
    },
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(obj=message, key=st.one_of(st.none(), st.binary(max_size=20)), multi=st.booleans())
def test_structured_messages_never_raise(
    obj: dict[str, Any], key: bytes | None, multi: bool
) -> None:
    features = two if multi else one
    r = decode_object(obj, key, features, LIMITS, NOW_MS)
    check_outcome(r, features("s"))
    raw = json.dumps(obj).encode()  # Python's json writes NaN/Infinity, which json.loads reads back
    check_outcome(decode(raw, key, features, LIMITS, NOW_MS), features("s"))


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=600), key=st.one_of(st.none(), st.binary(max_size=20)))
def test_arbitrary_bytes_never_raise(raw: bytes, key: bytes | None) -> None:
    check_outcome(decode(raw, key, one, LIMITS, NOW_MS), ("value",))


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=300))
def test_arbitrary_text_never_raises(text: str) -> None:
    raw = text.encode("utf-8", "surrogatepass")
    check_outcome(decode(raw, None, one, LIMITS, NOW_MS), ("value",))


def test_bounded_fuzz_by_mutating_valid_messages() -> None:
    """10,000 byte-level mutations of valid messages: every one is a Point or a reason."""
    rng = random.Random(20261201)
    seeds = [
        json.dumps({"stream": "web1.cpu", "ts": "2025-11-30T23:59:00Z", "value": 12.5}).encode(),
        json.dumps(
            {"stream": "AAPL", "ts": NOW_MS, "values": {"close": 1.0, "volume": 2}}
        ).encode(),
    ]
    alphabet = b'{}[]",:0123456789.eE+-NaInfityrulsTZ\\u\x00\xff '
    seen: set[str] = set()
    for _ in range(10_000):
        b = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 6)):
            op, i = rng.randrange(3), rng.randrange(len(b) + 1)
            if op == 0 and b:
                del b[min(i, len(b) - 1)]
            elif op == 1:
                b.insert(i, rng.choice(alphabet))
            elif b:
                b[min(i, len(b) - 1)] = rng.randrange(256)
        r = decode(bytes(b), rng.choice([None, b"key"]), rng.choice([one, two]), LIMITS, NOW_MS)
        check_outcome(
            r, ("close", "volume") if isinstance(r, Point) and len(r.values) == 2 else ("value",)
        )
        seen.add(r.reason if isinstance(r, Invalid) else "ok")
    assert {"ok", "not_json"} <= seen and len(seen) >= 5, seen
