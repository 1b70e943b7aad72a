"""``[kafka]``: where the daemon reads and writes, how it authenticates, and its bounds.

:meth:`KafkaConfig.__post_init__` rejects contradictions (SASL options without a SASL
protocol, TLS files without TLS, an output topic equal to the input topic, ...);
:func:`streamer.tables.build` reports them under ``[kafka]``. Secrets are ``repr=False``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class KafkaConfig:
    bootstrap_servers: tuple[str, ...] = ("127.0.0.1:9092",)
    input_topic: str = "metrics"
    alert_topic: str = "alerts"
    dlq_topic: str = "metrics.dlq"
    predictions_topic: str = ""  # empty: no predictions topic
    group_id: str = "lstmad"
    client_id: str = "lstmad"
    auto_offset_reset: str = "earliest"  # where a group with no committed offset starts
    poll_timeout_ms: int = 200  # one loop iteration waits at most this long for messages
    max_poll_records: int = 5000  # upper bound of one batch (one inference call per route)
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    max_poll_interval_ms: int = 300_000
    request_timeout_ms: int = 30_000
    metadata_max_age_ms: int = 30_000  # a topic or partitions added later are seen this soon
    flush_timeout_s: float = 30.0  # waiting for the broker's acks of one batch's outputs
    # Offsets (and, with [state] enabled, the state of the streams touched since) are
    # committed at most this often, and always on revocation and shutdown; 0: every batch.
    commit_interval_s: float = 1.0
    # A rebalance still pending after this long (partitions revoked, none assigned since)
    # gets a new consumer, a new member of the group: kafka-python 3.0's rejoin has been
    # seen to hang after a revocation on a freshly created topic. 0: never.
    rejoin_after_s: float = 60.0
    shutdown_timeout_s: float = 20.0  # SIGTERM to exit, hard bound
    max_message_bytes: int = 65_536  # larger input messages are dead-lettered as too_large
    fetch_max_bytes: int = 16_777_216  # bound of one fetch (memory under a burst)
    # "lstmad": streamer.kafka_records reads the fetched record batches (half the CPU of
    # kafka-python's own reader, the same records); "kafka-python": its own reader.
    record_reader: str = "lstmad"
    max_age_s: float = 30 * 86_400.0  # points older than now - max_age_s are refused; 0: off
    max_ahead_s: float = 300.0  # points newer than now + max_ahead_s are refused
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = ""
    sasl_username: str = ""
    sasl_password: str = field(default="", repr=False)
    ssl_cafile: str = ""
    ssl_certfile: str = ""
    ssl_keyfile: str = ""
    ssl_password: str = field(default="", repr=False)
    ssl_check_hostname: bool = True

    def security_options(self) -> dict[str, Any]:
        """kafka-python keyword arguments for authentication and TLS (only those set)."""
        opts: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.security_protocol.startswith("SASL_"):
            opts |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.sasl_username,
                "sasl_plain_password": self.sasl_password,
            }
        if self.security_protocol in ("SSL", "SASL_SSL"):
            opts["ssl_check_hostname"] = self.ssl_check_hostname
            for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_password"):
                if getattr(self, key):
                    opts[key] = getattr(self, key)
        return opts

    def __post_init__(self) -> None:
        if not self.bootstrap_servers:
            raise ValueError("bootstrap_servers is empty; set it or LSTMAD_BOOTSTRAP_SERVERS")
        for key in ("input_topic", "alert_topic", "dlq_topic", "group_id"):
            if not getattr(self, key):
                raise ValueError(f"{key} must not be empty")
        outs = {"alert_topic": self.alert_topic, "dlq_topic": self.dlq_topic}
        if self.predictions_topic:
            outs["predictions_topic"] = self.predictions_topic
        for key, topic in outs.items():
            if topic == self.input_topic:
                raise ValueError(f"{key} equals input_topic {topic!r}: outputs would loop")
        if len(set(outs.values())) != len(outs):
            raise ValueError(f"output topics must differ, got {outs}")
        if self.auto_offset_reset not in ("earliest", "latest"):
            raise ValueError("auto_offset_reset must be 'earliest' or 'latest'")
        if self.security_protocol not in SECURITY_PROTOCOLS:
            raise ValueError(f"security_protocol must be one of {SECURITY_PROTOCOLS}")
        sasl = self.security_protocol.startswith("SASL_")
        if sasl and self.sasl_mechanism not in SASL_MECHANISMS:
            raise ValueError(
                f"security_protocol {self.security_protocol} needs sasl_mechanism, "
                f"one of {SASL_MECHANISMS}"
            )
        if sasl and not (self.sasl_username and self.sasl_password):
            raise ValueError(
                "SASL needs sasl_username and sasl_password "
                "(or LSTMAD_SASL_USERNAME and LSTMAD_SASL_PASSWORD[_FILE])"
            )
        if not sasl and (self.sasl_mechanism or self.sasl_username or self.sasl_password):
            raise ValueError(
                "sasl_* is set but security_protocol is "
                f"{self.security_protocol}; use SASL_PLAINTEXT or SASL_SSL"
            )
        tls_keys = [x for x in ("ssl_cafile", "ssl_certfile", "ssl_keyfile") if getattr(self, x)]
        if tls_keys and self.security_protocol not in ("SSL", "SASL_SSL"):
            raise ValueError(
                f"{tls_keys[0]} is set but security_protocol is "
                f"{self.security_protocol}; use SSL or SASL_SSL"
            )
        positive = (
            "poll_timeout_ms",
            "max_poll_records",
            "max_message_bytes",
            "flush_timeout_s",
            "fetch_max_bytes",
        )
        for key in (*positive, "shutdown_timeout_s"):
            if getattr(self, key) <= 0:
                raise ValueError(f"{key} must be > 0, got {getattr(self, key)}")
        for key in ("commit_interval_s", "rejoin_after_s"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key} must be >= 0, got {getattr(self, key)}")
        if self.record_reader not in ("lstmad", "kafka-python"):
            raise ValueError(
                f"record_reader must be 'lstmad' or 'kafka-python', got {self.record_reader!r}"
            )
        if self.max_age_s < 0 or self.max_ahead_s < 0:
            raise ValueError("max_age_s and max_ahead_s must be >= 0")
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise ValueError("heartbeat_interval_ms must be below session_timeout_ms")
