"""What lstmad writes to Kafka: alerts, dead letters and (optionally) predictions, as JSON.

Alerts follow ``streamer/schemas/alert.v1.json`` (``schema: "lstmad.alert/v1"``). The
``alert_id`` is a pure function of (model sha256, stream, type, episode start, status), so a
point re-processed after a crash or a rebalance yields the same id and consumers can
de-duplicate the at-least-once stream. ``detected_at`` and ``source`` describe this
delivery and are the only fields that may differ between two runs over the same data.

Dead letters (``schema: "lstmad.dead_letter/v1"``) carry the bounded reason, a short detail,
the source topic/partition/offset and the original key and payload: as text when it is
valid UTF-8, else base64 (``payload_encoding``). Payloads above :data:`MAX_DLQ_PAYLOAD`
bytes are cut (``truncated: true``, ``payload_bytes`` keeps the size); the source
coordinates still find the original.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ALERT_SCHEMA = "lstmad.alert/v1"
DEAD_LETTER_SCHEMA = "lstmad.dead_letter/v1"
PREDICTION_SCHEMA = "lstmad.prediction/v1"
SCHEMA_FILE = Path(__file__).resolve().parent / "schemas" / "alert.v1.json"
MAX_DLQ_PAYLOAD = 262_144


@dataclass(frozen=True, slots=True)
class ModelRef:
    """The model that produced an output: manifest name and version, file sha256, route."""

    name: str
    version: str
    sha256: str
    route: str = "default"

    def to_dict(self) -> dict[str, str]:
        return {
            "name": self.name,
            "version": self.version,
            "sha256": self.sha256,
            "route": self.route,
        }


@dataclass(frozen=True, slots=True)
class Source:
    topic: str
    partition: int
    offset: int

    def to_dict(self) -> dict[str, Any]:
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset}


def rfc3339(ts_ms: int) -> str:
    """Epoch milliseconds -> ``2026-11-24T05:00:00.000Z``."""
    dt = datetime.fromtimestamp(ts_ms / 1000.0, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts_ms % 1000:03d}Z"


def _num(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def alert_id(model_sha256: str, stream: str, type_: str, episode_start_ms: int, status: str) -> str:
    """Deterministic id: the same episode transition always gets the same 32 hex digits."""
    text = "\x1f".join((model_sha256, stream, type_, str(episode_start_ms), status))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def alert(event: Any, model: ModelRef, source: Source | None, detected_at: float) -> dict[str, Any]:
    """An alert document for a :class:`streamer.pipeline.Event` (duck-typed, see the schema)."""
    return {
        "schema": ALERT_SCHEMA,
        "alert_id": alert_id(
            model.sha256, event.stream, event.type, int(event.episode_start_ms), event.status
        ),
        "type": event.type,
        "status": event.status,
        "stream": event.stream,
        "ts": rfc3339(int(event.ts_ms)),
        "ts_ms": int(event.ts_ms),
        "episode_start": rfc3339(int(event.episode_start_ms)),
        "value": _num(event.value),
        "predicted": _num(event.predicted),
        "error": _num(event.error),
        "score": _num(event.score),
        "threshold": _num(event.threshold),
        "severity": event.severity,
        "model": model.to_dict(),
        "source": source.to_dict() if source else None,
        "detected_at": rfc3339(int(detected_at * 1000)),
    }


DELIVERY_FIELDS = ("detected_at", "source")


def content(doc: dict[str, Any]) -> dict[str, Any]:
    """An alert without its delivery fields: equal for the same data however it was read."""
    return {k: v for k, v in doc.items() if k not in DELIVERY_FIELDS}


def encode(doc: dict[str, Any]) -> bytes:
    """Compact JSON; non-ASCII is escaped so any stream id round-trips through any consumer."""
    return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode("ascii")


def _text_or_b64(data: bytes | None) -> tuple[str | None, str]:
    if data is None:
        return None, "none"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), "base64"


def dead_letter(
    reason: str,
    detail: str,
    source: Source,
    key: bytes | None,
    payload: bytes | None,
    timestamp_ms: int | None,
    detected_at: float,
) -> dict[str, Any]:
    """The dead-letter document for one unusable input message."""
    size = 0 if payload is None else len(payload)
    cut = payload[:MAX_DLQ_PAYLOAD] if payload is not None else None
    text, encoding = _text_or_b64(cut)
    if encoding == "utf-8" and cut is not None and len(cut) < size:
        # A cut may split a UTF-8 sequence; base64 keeps the bytes exact.
        text, encoding = base64.b64encode(cut).decode("ascii"), "base64"
    key_text, key_encoding = _text_or_b64(key)
    return {
        "schema": DEAD_LETTER_SCHEMA,
        "reason": reason,
        "detail": detail,
        "source": {**source.to_dict(), "timestamp_ms": timestamp_ms},
        "key": key_text,
        "key_encoding": key_encoding,
        "payload": text,
        "payload_encoding": encoding,
        "payload_bytes": size,
        "truncated": size > MAX_DLQ_PAYLOAD,
        "detected_at": rfc3339(int(detected_at * 1000)),
    }


def prediction(
    stream: str,
    ts_ms: int,
    predicted: float,
    actual: float,
    error: float,
    norm_error: float,
    model: ModelRef,
) -> dict[str, Any]:
    """One predictions-topic record: the forecast for a point and the value that arrived."""
    return {
        "schema": PREDICTION_SCHEMA,
        "stream": stream,
        "ts": rfc3339(ts_ms),
        "ts_ms": ts_ms,
        "predicted": _num(predicted),
        "actual": _num(actual),
        "error": _num(error),
        "norm_error": _num(norm_error),
        "model": model.to_dict(),
    }


def load_schema() -> dict[str, Any]:
    """The alert JSON Schema (draft 2020-12) shipped with the package."""
    return json.loads(SCHEMA_FILE.read_text())
