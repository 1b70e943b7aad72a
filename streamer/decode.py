"""One input message -> one point, or a bounded reason it cannot be used.

This is the only per-message Python in the daemon, and it never raises on input: every
failure maps to a reason of :data:`streamer.metrics.INVALID_REASONS` plus a short human
detail for the dead-letter record. Accepted formats (DESIGN.md, key = stream id)::

    {"stream": "host1.cpu", "ts": "2026-11-24T05:00:00Z", "value": 0.42}
    {"stream": "AAPL", "ts": 1700000000000, "values": {"close": 189.2, "volume": 51200}}

* ``ts``: RFC 3339 with an offset or ``Z`` (fractions allowed), or epoch milliseconds (an
  integer, or a float that is truncated). Outside :data:`MIN_TS_MS`..:data:`MAX_TS_MS` it is
  ``bad_timestamp``; older than ``now - max_age`` or newer than ``now + max_ahead`` it is
  ``timestamp_out_of_range``.
* ``stream`` falls back to the message key (UTF-8). Ids are 1..:data:`MAX_STREAM_CHARS`
  characters, valid Unicode (no lone surrogates), no control characters.
* ``value`` is shorthand for a model with exactly one feature; ``values`` must name every
  feature of the stream's model and nothing else. Numbers only (no booleans, no strings),
  finite, with magnitude at most :data:`MAX_ABS_VALUE` so float32 inference cannot overflow.
* Other top-level keys are ignored (room for labels); a message above ``max_bytes`` is
  refused before it is parsed, which also bounds nesting depth and string sizes.

Speed: :func:`decode` parses with orjson and accepts valid messages on a short path (a
printable ASCII stream id is checked by two C-level str methods; nothing is kept per
stream). Whatever it does not accept takes the original stdlib json route to
:func:`decode_object`, so a rejection keeps its exact reason and detail.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from streamer.metrics import INVALID_REASONS

MAX_STREAM_CHARS = 256
MAX_ABS_VALUE = 1e18
MIN_TS_MS = 0  # 1970-01-01
MAX_TS_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
MAX_DETAIL = 200
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}"
    r"(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# No cache of checked stream ids: one was a dict entry per live stream (38 B of RSS per
# stream at 100,000 streams) to skip checks costing ~0.6 us; a printable ASCII id (the
# common case) passes them in two C-level str methods instead (see _plain_id).
# json refuses nesting near the recursion limit (1000 less the caller's depth), orjson past
# 1024: a message that might nest that deep (2 bytes a level) takes the stdlib route as before.
_DEEP = 500


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds applied while decoding; ``max_age_ms = 0`` turns the staleness check off."""

    max_bytes: int = 65_536
    max_age_ms: int = 30 * 86_400_000
    max_ahead_ms: int = 300_000


@dataclass(frozen=True, slots=True)
class Point:
    stream: str
    ts_ms: int
    values: tuple[float, ...]  # in the order of the stream's model features


@dataclass(frozen=True, slots=True)
class Invalid:
    reason: str  # one of INVALID_REASONS
    detail: str  # for humans, at most MAX_DETAIL characters

    def __post_init__(self) -> None:
        assert self.reason in INVALID_REASONS, self.reason


Features = Callable[[str], tuple[str, ...]]


def _bad(reason: str, detail: str) -> Invalid:
    return Invalid(reason, detail[:MAX_DETAIL])


def _stream(obj: dict[str, Any], key: bytes | None) -> str | Invalid:
    s = obj.get("stream")
    if s is None:
        if key is None:
            return _bad("missing_stream", "no 'stream' field and no message key")
        try:
            s = key.decode("utf-8")
        except UnicodeDecodeError:
            return _bad("missing_stream", "no 'stream' field and the key is not UTF-8")
    if not isinstance(s, str) or not s:
        return _bad("missing_stream", "'stream' must be a non-empty string")
    if len(s) > MAX_STREAM_CHARS:
        return _bad("missing_stream", f"'stream' is longer than {MAX_STREAM_CHARS} characters")
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return _bad("missing_stream", "'stream' is not valid Unicode (lone surrogate)")
    if _CONTROL.search(s):
        return _bad("missing_stream", "'stream' contains control characters")
    return s


def _plain_id(s: str) -> bool:
    """``s`` passes :func:`_stream`'s checks and is ASCII. For ASCII text, ``isprintable``
    is false exactly for the control characters ``_CONTROL`` names (0x00-0x1f, 0x7f), and
    encoding to UTF-8 cannot fail; other ids take the full checks."""
    return 0 < len(s) <= MAX_STREAM_CHARS and s.isascii() and s.isprintable()


def parse_ts(ts: Any) -> int | Invalid:
    """RFC 3339 string or epoch milliseconds -> epoch milliseconds (UTC)."""
    if isinstance(ts, bool) or ts is None:
        return _bad("bad_timestamp", "'ts' is missing" if ts is None else "'ts' is a boolean")
    if isinstance(ts, int):
        ms = ts
    elif isinstance(ts, float):
        if not math.isfinite(ts):
            return _bad("bad_timestamp", "'ts' is not finite")
        if not MIN_TS_MS <= ts <= MAX_TS_MS:
            return _bad("bad_timestamp", "'ts' epoch milliseconds outside years 1970..9999")
        ms = int(ts)
    elif isinstance(ts, str):
        if len(ts) > 40 or not _RFC3339.fullmatch(ts):
            return _bad("bad_timestamp", "'ts' is not RFC 3339 (e.g. 2026-11-24T05:00:00Z)")
        try:
            dt = datetime.fromisoformat(ts[:-1] + "+00:00" if ts[-1] in "Zz" else ts)
            ms = math.floor(dt.timestamp() * 1000 + 1e-6)
        except (ValueError, OverflowError):
            return _bad("bad_timestamp", "'ts' is not a valid date and time")
    else:
        return _bad("bad_timestamp", f"'ts' must be a string or a number, not {_kind(ts)}")
    if not MIN_TS_MS <= ms <= MAX_TS_MS:
        return _bad("bad_timestamp", "'ts' outside years 1970..9999")
    return ms


def _kind(v: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(v), "null" if v is None else type(v).__name__
    )


def _number(v: Any, name: str) -> float | Invalid:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return _bad("bad_value", f"{name} must be a number, not {_kind(v)}")
    try:
        f = float(v)
    except OverflowError:
        return _bad("bad_value", f"{name} is too large for a float")
    if not math.isfinite(f):
        return _bad("non_finite", f"{name} is not finite")
    if abs(f) > MAX_ABS_VALUE:
        return _bad("bad_value", f"{name} magnitude exceeds {MAX_ABS_VALUE:g}")
    return f


def _values(obj: dict[str, Any], features: tuple[str, ...]) -> tuple[float, ...] | Invalid:
    has_one, has_many = "value" in obj, "values" in obj
    if has_one and has_many:
        return _bad("bad_value", "give either 'value' or 'values', not both")
    if has_one:
        if len(features) != 1:
            return _bad(
                "missing_feature",
                f"'value' given but the model needs 'values' for {', '.join(features)}",
            )
        v = _number(obj["value"], "'value'")
        return v if isinstance(v, Invalid) else (v,)
    if not has_many:
        return _bad("missing_value", "no 'value' or 'values' field")
    vals = obj["values"]
    if not isinstance(vals, dict):
        return _bad("bad_value", f"'values' must be an object, not {_kind(vals)}")
    unknown = [k for k in vals if k not in features]
    if unknown:
        return _bad("unknown_feature", f"'values' has unknown feature {unknown[0]!r}")
    out = []
    for name in features:
        if name not in vals:
            return _bad("missing_feature", f"'values' lacks feature {name!r}")
        v = _number(vals[name], f"'values'.{name}")
        if isinstance(v, Invalid):
            return v
        out.append(v)
    return tuple(out)


def _out_of_range(ts: int, limits: Limits, now_ms: int) -> Invalid | None:
    if limits.max_age_ms and ts < now_ms - limits.max_age_ms:
        return _bad("timestamp_out_of_range", "'ts' is older than [kafka] max_age_s")
    if ts > now_ms + limits.max_ahead_ms:
        return _bad("timestamp_out_of_range", "'ts' is further ahead than [kafka] max_ahead_s")
    return None


def decode_object(
    obj: Any, key: bytes | None, features: Features, limits: Limits, now_ms: int
) -> Point | Invalid:
    """Validate an already parsed message; ``features(stream)`` names its model's inputs."""
    if not isinstance(obj, dict):
        return _bad("not_object", f"the message is {_kind(obj)}, not a JSON object")
    stream = _stream(obj, key)
    if isinstance(stream, Invalid):
        return stream
    ts = parse_ts(obj.get("ts"))
    if isinstance(ts, Invalid):
        return ts
    late = _out_of_range(ts, limits, now_ms)
    if late is not None:
        return late
    values = _values(obj, features(stream))
    if isinstance(values, Invalid):
        return values
    return Point(stream, ts, values)


def _number_fast(v: Any) -> float | None:
    """An accepted number as float, or None. Exact types (a bool is no number); orjson reads
    ints past 64 bits as floats, so float() cannot overflow; NaN and inf fail the comparison."""
    if type(v) is float:
        f = v
    elif type(v) is int:
        f = float(v)
    else:
        return None
    return f if -MAX_ABS_VALUE <= f <= MAX_ABS_VALUE else None


def _fast(
    obj: Any, key: bytes | None, features: Features, limits: Limits, now_ms: int
) -> Point | Invalid | None:
    """What decode_object would return for ``obj`` (from orjson), or None to let it decide on
    the stdlib's parse. Its checks, in its order, for orjson's exact types; past stream and ts
    the two parses agree, so a stale or early ts is named here."""
    if type(obj) is not dict:
        return None
    s = obj.get("stream")
    if s is None and key is not None:
        try:
            s = key.decode("utf-8")
        except UnicodeDecodeError:
            return None
    if type(s) is str and 0 < len(s) <= MAX_STREAM_CHARS and s.isascii() and s.isprintable():
        stream = s  # as _stream would pass it: see _plain_id (inlined, the per-message path)
    else:
        checked = _stream(obj, key)
        if isinstance(checked, Invalid):
            return None
        stream = checked
    ts = obj.get("ts")
    ts = ts if type(ts) is int and MIN_TS_MS <= ts <= MAX_TS_MS else parse_ts(ts)
    if isinstance(ts, Invalid):
        return None
    if (limits.max_age_ms and ts < now_ms - limits.max_age_ms) or ts > now_ms + limits.max_ahead_ms:
        return _out_of_range(ts, limits, now_ms)  # stale backlogs are common and cheap to name
    names = features(stream)
    if "values" not in obj:
        v = _number_fast(obj.get("value")) if len(names) == 1 else None
        return None if v is None else Point(stream, ts, (v,))
    vals = obj["values"]
    if "value" in obj or type(vals) is not dict or any(k not in names for k in vals):
        return None
    out = []
    for name in names:  # a missing name gives None too
        v = _number_fast(vals.get(name))
        if v is None:
            return None
        out.append(v)
    return Point(stream, ts, tuple(out))


def _decode_json(
    value: bytes, key: bytes | None, features: Features, limits: Limits, now_ms: int
) -> Point | Invalid:
    """The original decode: stdlib json (which reads NaN, Infinity, big ints and lone
    surrogates that orjson refuses) then decode_object, which names every reason."""
    try:
        text = value.decode("utf-8")  # str, not bytes: skips json's encoding sniffing
    except UnicodeDecodeError:
        return _bad("not_json", "not UTF-8")
    try:
        obj = json.loads(text)
    except RecursionError:
        return _bad("not_json", "JSON nested too deeply")
    except (ValueError, TypeError) as exc:  # JSONDecodeError, UnicodeDecodeError, int digits
        return _bad("not_json", f"not JSON: {exc.__class__.__name__}")
    return decode_object(obj, key, features, limits, now_ms)


def decode(
    value: bytes | None, key: bytes | None, features: Features, limits: Limits, now_ms: int
) -> Point | Invalid:
    """Decode one Kafka message value. Never raises for any ``value`` or ``key`` bytes."""
    if value is None:
        return _bad("not_json", "empty message (tombstone)")
    if len(value) > limits.max_bytes:
        return _bad("too_large", f"{len(value)} bytes > [kafka] max_message_bytes")
    if len(value) >= 2 * _DEEP and value.count(b"[") + value.count(b"{") >= _DEEP:
        return _decode_json(value, key, features, limits, now_ms)
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError:  # also bad UTF-8, NaN, lone surrogates, 1e400, depth > 1024
        return _decode_json(value, key, features, limits, now_ms)
    done = _fast(obj, key, features, limits, now_ms)
    return done if done is not None else _decode_json(value, key, features, limits, now_ms)
