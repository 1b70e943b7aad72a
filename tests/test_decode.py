"""The decoder never raises: any bytes end as a Point or a bounded reason (hypothesis + fuzz)."""

from __future__ import annotations

import json
import math
import random
import re
import tracemalloc
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import streamer.decode as decode_mod
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


# The orjson short path must return exactly what the original stdlib route returns: the same
# Point, or the same reason AND detail. decode._decode_json is that route, kept as it was.


def original(raw: bytes, key: bytes | None = None, features: Any = one) -> Point | Invalid:
    if len(raw) > LIMITS.max_bytes:
        return decode(raw, key, features, LIMITS, NOW_MS)  # refused before any parser runs
    return decode_mod._decode_json(raw, key, features, LIMITS, NOW_MS)


def same(raw: bytes, key: bytes | None = None, features: Any = one) -> Point | Invalid:
    new, old = decode(raw, key, features, LIMITS, NOW_MS), original(raw, key, features)
    assert new == old, (raw[:120], new, old)
    return new


HEAD = b'{"stream": "s", "ts": 1764547200000, '


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        # json reads these, orjson refuses them: the stdlib route classifies them as before
        (HEAD + b'"value": NaN}', "non_finite"),
        (HEAD + b'"value": Infinity}', "non_finite"),
        (HEAD + b'"value": -Infinity}', "non_finite"),
        (HEAD + b'"value": 1e400}', "non_finite"),
        (HEAD + b'"value": ' + b"9" * 400 + b"}", "bad_value"),  # int too large for a float
        (HEAD + b'"value": ' + b"9" * 5000 + b"}", "too_large"),  # > LIMITS.max_bytes
        (b'{"stream": "\\ud800x", "ts": 1764547200000, "value": 1}', "missing_stream"),
        (HEAD + b'"value": 1, "label": "\\udc00"}', "ok"),  # lone surrogate in an ignored key
        (HEAD + b'"value": 1, "deep": ' + b"[" * 400 + b"]" * 400 + b"}", "ok"),
        # orjson reads integers beyond 64 bits as floats, json as ints
        (HEAD + b'"value": 18446744073709551616}', "bad_value"),
        (HEAD + b'"value": -9223372036854775809}', "bad_value"),
        (b'{"stream": "s", "ts": 18446744073709551616, "value": 1}', "bad_timestamp"),
        (b'{"stream": "s", "ts": 1764547200000, "values": 18446744073709551616}', "bad_value"),
        (b"18446744073709551616", "not_object"),
        (HEAD + b'"value": 9223372036854775807}', "bad_value"),
        # duplicate keys: both parsers keep the last
        (HEAD + b'"value": "x", "value": 2.5}', "ok"),
        (HEAD + b'"value": 2.5, "value": NaN}', "non_finite"),
        (b'{"stream": 7, "stream": "s", "ts": 1764547200000, "value": 1}', "ok"),
        # invalid UTF-8 and byte order marks never reach a parser's leniency
        (HEAD + b'"value": 1, "label": "\xff"}', "not_json"),
        (HEAD + b'"value": 1, "label": "\xed\xa0\x80"}', "not_json"),
        (b"\xef\xbb\xbf" + HEAD + b'"value": 1}', "not_json"),
        (HEAD + b'"value": 1}\x00', "not_json"),
        (HEAD + b'"value": -0.0}', "ok"),
        (HEAD + b'"value": 1e18, "x": [1, {"y": null}]}', "ok"),
        (HEAD + b'"value": 1.0000000000000002e18}', "bad_value"),
        (HEAD + b'"value": false}', "bad_value"),
        (b'{"stream": "s", "ts": true, "value": 1}', "bad_timestamp"),
        (b'{"stream": "s", "ts": 1764547200000.9, "value": 1}', "ok"),
        (b'{"stream": "s", "ts": "2025-12-01T00:00:00.5Z", "value": 1}', "ok"),
        (b'{"stream": "s", "ts": 1e400, "value": 1}', "bad_timestamp"),
        # a stale or early ts is named on the short path, after the stream and ts checks
        (b'{"stream": "s", "ts": 1764460799999, "value": 1}', "timestamp_out_of_range"),
        (b'{"stream": "s", "ts": 1764547500001, "value": NaN}', "timestamp_out_of_range"),
        (b'{"stream": "s", "ts": 1764547500001, "value": "x"}', "timestamp_out_of_range"),
        (b'{"stream": "s", "ts": "2025-11-29T00:00:00Z", "values": 1}', "timestamp_out_of_range"),
        (b'{"stream": "s", "ts": 1764460799999.5}', "timestamp_out_of_range"),
        (b'{"stream": "", "ts": 1764460799999, "value": 1}', "missing_stream"),
        (b'{"ts": 1764460799999, "value": 1}', "missing_stream"),
        (b'{"stream": "s", "ts": -1764460799999, "value": 1}', "bad_timestamp"),
    ],
)
def test_the_short_path_decodes_edge_cases_like_the_stdlib(raw: bytes, want: str) -> None:
    r = same(raw)
    assert (r.reason if isinstance(r, Invalid) else "ok") == want, r


@pytest.mark.parametrize("depth", [499, 500, 990, 1000, 1010, 1024, 1025, 1100])
def test_deep_nesting_is_refused_or_kept_like_the_stdlib(depth: int) -> None:
    """json's depth limit is the interpreter's recursion limit, orjson's is 1024."""
    deep = b"[" * depth + b"]" * depth
    limits = Limits(max_bytes=10**6, max_age_ms=LIMITS.max_age_ms)
    for raw in (HEAD + b'"value": 1, "x": ' + deep + b"}", deep, b'{"a": ' + deep + b"}"):
        new = decode(raw, None, one, limits, NOW_MS)
        assert new == decode_mod._decode_json(raw, None, one, limits, NOW_MS)


def test_duplicate_keys_keep_the_last_value_and_multi_feature_edges() -> None:
    assert same(HEAD + b'"value": "x", "value": 2.5}') == Point("s", NOW_MS, (2.5,))
    base = b'{"stream": "A", "ts": 1764547200000, '
    for values in (
        b'{"close": 1, "volume": 2}',
        b'{"volume": 2, "close": 1.5, "close": 3}',
        b'{"close": 1, "volume": 2, "x": 3}',
        b'{"close": 1, "close": 2}',
        b'{"close": 1, "volume": null}',
        b'{"close": 1, "volume": true}',
        b'{"close": 1, "volume": NaN}',
        b"{}",
        b"[1, 2]",
    ):
        same(base + b'"values": ' + values + b"}", features=two)
        same(base + b'"value": 1, "values": ' + values + b"}", features=two)
    same(base + b'"values": {"value": 1}}')  # 'values' also serves a one-feature model
    same(base + b'"value": 1}', features=two)
    dup = same(base + b'"values": {"a": 1}}', features=lambda _: ("a", "a"))
    assert dup == Point("A", NOW_MS, (1.0, 1.0))
    assert same(base + b'"values": {"a": 1, "b": 2}}', features=lambda _: ("a", "a")) == (
        Invalid("unknown_feature", "'values' has unknown feature 'b'")
    )


def test_timestamp_ranges_match_the_stdlib() -> None:
    for limits in (LIMITS, Limits(max_bytes=4096, max_age_ms=0, max_ahead_ms=0)):
        for ts in (0, NOW_MS - 86_400_001, NOW_MS - 86_400_000, NOW_MS, NOW_MS + 1, 2**63, -1):
            for value in (b"1", b"NaN", b'"x"'):
                raw = b'{"stream": "s", "ts": %d, "value": %s}' % (ts, value)
                new = decode(raw, None, one, limits, NOW_MS)
                assert new == decode_mod._decode_json(raw, None, one, limits, NOW_MS), raw


def test_key_fallback_and_stream_checks_match_the_stdlib() -> None:
    body = b'{"ts": 1764547200000, "value": 1}'
    for key in (None, b"k1", b"", b"\xff", b"a\x00b", b"x" * 300, "é🔥".encode(), b"\xed\xa0\x80"):
        same(body, key=key)
        same(b'{"stream": null, "ts": 1764547200000, "value": 1}', key=key)
        same(b'{"stream": "s", "ts": 1764547200000, "value": 1}', key=key)
    for sid in ("", "a\u2028b", "a\x7f", "x" * MAX_STREAM_CHARS, "x" * (MAX_STREAM_CHARS + 1)):
        same(json.dumps({"stream": sid, "ts": NOW_MS, "value": 1}).encode())
    same(b'{"stream": ["s"], "ts": 1764547200000, "value": 1}')


@settings(max_examples=400, deadline=None)
@given(sid=st.one_of(st.text(max_size=300), st.text(st.characters(max_codepoint=0x7F))))
def test_the_plain_id_check_agrees_with_the_full_checks(sid: str) -> None:
    """The per-message shortcut passes an id only if the full checks would, and for ASCII
    ids exactly when they would; the decoded Point is the same either way."""
    full = decode_mod._stream({"stream": sid}, None)
    if decode_mod._plain_id(sid):
        assert full == sid
    elif sid.isascii():
        assert isinstance(full, Invalid), sid
    same(json.dumps({"stream": sid, "ts": NOW_MS, "value": 1}).encode())


def test_decoding_keeps_nothing_per_stream() -> None:
    """No cache of stream ids: 20,000 distinct streams leave no memory behind in decode
    (the former id cache kept 1.7 MB here: its dict and the ids)."""
    msgs = [
        b'{"stream": "host%06d.cpu", "ts": %d, "value": 1}' % (i, NOW_MS) for i in range(20_000)
    ]
    for m in msgs[:100]:
        dec(json.loads(m))  # warm up whatever is allocated once
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for m in msgs:
            assert isinstance(decode(m, None, one, LIMITS, NOW_MS), Point)
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept < 50_000, kept


@settings(max_examples=300, deadline=None)
@given(x=st.floats(allow_nan=False, allow_infinity=False), digits=st.integers(1, 17))
def test_numbers_parse_to_the_same_float(x: float, digits: int) -> None:
    for text in (
        repr(x),
        f"{x:.{digits}e}",
        f"{x:.{digits}g}",
        str(int(x)) if abs(x) < 1e30 else "1",
    ):
        r = same(HEAD + b'"value": ' + text.encode() + b"}")
        if isinstance(r, Point):
            assert r.values == (float(text),)
        same(json.dumps({"stream": "s", "ts": NOW_MS + x % 1000, "value": 1}).encode())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(obj=message, key=st.one_of(st.none(), st.binary(max_size=20)), multi=st.booleans())
def test_structured_messages_decode_like_the_stdlib(
    obj: dict[str, Any], key: bytes | None, multi: bool
) -> None:
    same(json.dumps(obj).encode(), key, two if multi else one)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=300), key=st.one_of(st.none(), st.binary(max_size=8)))
def test_arbitrary_text_decodes_like_the_stdlib(text: str, key: bytes | None) -> None:
    same(text.encode("utf-8", "surrogatepass"), key)


# JSON tokens where orjson and json part ways (numbers, escapes, literals) or that reshape the
# message, spliced over whole tokens of valid messages.
TOKENS = [
    *(b"NaN", b"-Infinity", b"1e400", b"-0", b"0.5", b"1e18", b"1e19", b"true", b"null"),
    *(b"18446744073709551616", b"-9223372036854775809", b"9" * 30, b"1764547200000.5"),
    *(b'"\\ud800"', b'"\\u0000"', b'"\xff"', b'"2025-12-01T00:00:00Z"', b'""', b'"s"'),
    *(b'"value"', b'"values"', b'"stream"', b'"ts"', b'"close"', b'"volume"'),
    *(b"{", b"}", b"[", b"]", b",", b":", b" ", b"[[[[1]]]]", b'{"value": 1}'),
]


def test_token_spliced_messages_decode_like_the_stdlib() -> None:
    """5,000 messages with whole JSON tokens replaced, inserted or dropped: identical outcome."""
    rng = random.Random(20261202)
    seeds = [
        b'{"stream": "web1.cpu", "ts": "2025-11-30T23:59:00Z", "value": 12.5}',
        b'{"stream": "AAPL", "ts": 1764547200000, "values": {"close": 1.0, "volume": 2}}',
        b'{"ts": 1764547200000, "value": 3, "labels": {"dc": "eu"}}',
    ]
    split = [re.findall(rb'"[^"]*"|[^\s"{}:,]+|[{}:,]', seed) for seed in seeds]
    outcomes: set[str] = set()
    for _ in range(5_000):
        toks = list(rng.choice(split))
        for _ in range(rng.randint(1, 3)):
            i, tok = rng.randrange(len(toks)), rng.choice(TOKENS)
            op = rng.randrange(3)
            if op == 0:
                toks[i] = tok
            elif op == 1:
                toks.insert(i, tok)
            elif len(toks) > 1:
                del toks[i]
        r = same(b" ".join(toks), rng.choice([None, b"key", b"\xff"]), rng.choice([one, two]))
        outcomes.add(r.reason if isinstance(r, Invalid) else "ok")
    assert {"ok", "not_json", "bad_value", "non_finite"} <= outcomes and len(outcomes) >= 8, (
        outcomes
    )
