"""Structured logs: one JSON object per line on stderr, fields passed as ``extra``.

Call ``log.info("model reloaded", extra={"fields": {"route": "db", "sha256": sha}})``; the
formatter merges ``fields`` into the record. Any field whose name says it is a secret
(password, secret, token, credential) is replaced by ``"***"`` whatever the caller passed,
so a careless call cannot leak a credential into the logs.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

from streamer.config import LogConfig

LOGGER = "lstmad"
_SECRET_WORDS = ("password", "secret", "token", "credential", "sasl_plain")


def _scrub(fields: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in fields.items():
        if any(w in k.lower() for w in _SECRET_WORDS):
            out[k] = "***"
        elif isinstance(v, dict):
            out[k] = _scrub(v)
        else:
            out[k] = v
    return out


class JsonFormatter(logging.Formatter):
    """``{"ts": "...Z", "level": "INFO", "logger": "lstmad.daemon", "msg": "...", ...}``."""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        doc: dict[str, Any] = {
            "ts": f"{ts}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            doc.update(_scrub(fields))
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict) and fields:
            base += " " + " ".join(f"{k}={v}" for k, v in _scrub(fields).items())
        return base


def setup(cfg: LogConfig, stream: TextIO | None = None) -> logging.Logger:
    """Configure the ``lstmad`` logger (and kafka-python's, at WARNING) from ``[log]``."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if cfg.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log = logging.getLogger(LOGGER)
    log.handlers[:] = [handler]
    log.setLevel(cfg.level.upper())
    log.propagate = False
    kafka_log = logging.getLogger("kafka")
    kafka_log.handlers[:] = [handler]
    kafka_log.setLevel(logging.WARNING if cfg.level.upper() != "DEBUG" else logging.INFO)
    kafka_log.propagate = False
    return log


def get(name: str) -> logging.Logger:
    return logging.getLogger(f"{LOGGER}.{name}")
