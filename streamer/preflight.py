"""Start-up check of the Kafka connection: fail fast on errors that retrying cannot fix.

kafka-python retries a bootstrap that fails authentication or TLS verification until its
request timeout, the same way it retries a broker that is merely down. For a daemon that
is the wrong answer: wrong credentials or an untrusted certificate must end the process at
once with a clear message and a non-zero exit (a supervisor restarting it would only make a
retry storm), while a broker that is down is retried with backoff.

:func:`check` bootstraps one admin client in a thread and watches kafka-python's own log
records for the typed errors its network layer reports (``SaslAuthenticationFailedError``,
``AuthorizationError``, an SSL ``CERTIFICATE_VERIFY_FAILED``); the first one raises
:class:`FatalKafkaError`. Secrets are never part of a message.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Mapping
from typing import Any

# Keys of kafka-python's config that must never reach a log line or an error message.
SECRET_KEYS = frozenset({"sasl_plain_password", "ssl_password", "sasl_oauth_token_provider"})
PREFLIGHT_RECONNECT_MAX_MS = 1000


class FatalKafkaError(RuntimeError):
    """A Kafka connection problem that retrying cannot fix (credentials, trust, ACLs)."""


class BrokerUnavailable(RuntimeError):
    """No broker answered within the timeout; retry with backoff."""


def redacted(config: Mapping[str, Any]) -> dict[str, Any]:
    return {k: ("***" if k in SECRET_KEYS and v else v) for k, v in config.items()}


def classify(exc: BaseException) -> str | None:
    """'auth', 'tls' or None (retriable) for an exception kafka-python reported."""
    from kafka import errors

    if isinstance(exc, errors.SaslAuthenticationFailedError | errors.AuthorizationError):
        return "auth"
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text or "WRONG_VERSION_NUMBER" in text:
        return "tls"
    return None


class _Watcher(logging.Handler):
    """Collects the first fatal error logged by the threads of one client (by thread name)."""

    def __init__(self, threads: set[str]) -> None:
        super().__init__(logging.DEBUG)
        self.threads = threads
        self.fatal: tuple[str, BaseException] | None = None
        self.event = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.threadName not in self.threads:
            return  # another client of this process (or a leftover preflight) is not our business
        args = record.args if isinstance(record.args, tuple) else ()
        for arg in args:
            if isinstance(arg, BaseException) and (kind := classify(arg)) and self.fatal is None:
                self.fatal = (kind, arg)
                self.event.set()


def check(client_config: Mapping[str, Any], timeout_s: float = 20.0) -> None:
    """Bootstrap once; raise FatalKafkaError or BrokerUnavailable, or return when connected."""
    from kafka import KafkaAdminClient

    client_id = f"lstmad-preflight-{uuid.uuid4().hex[:8]}"
    watcher = _Watcher({f"kafka-io-{client_id}", client_id})
    kafka_log = logging.getLogger("kafka")
    kafka_log.addHandler(watcher)
    done: dict[str, BaseException | None] = {}

    def bootstrap() -> None:
        try:
            cfg = {
                **client_config,
                "request_timeout_ms": int(timeout_s * 1000),
                "client_id": client_id,
                # A broker may drop the socket right after refusing the credentials, which
                # kafka-python reports as a plain disconnect and retries after a backoff that
                # grows to 30 s; capped at 1 s, the next attempt reports the refusal itself
                # well within timeout_s (seen once in CI: a 13 s backoff, then no answer).
                "reconnect_backoff_max_ms": PREFLIGHT_RECONNECT_MAX_MS,
            }
            admin = KafkaAdminClient(**cfg)
            admin.close()
            done["error"] = None
        except BaseException as exc:  # reported to the caller below
            done["error"] = exc
        watcher.event.set()

    thread = threading.Thread(target=bootstrap, name=client_id, daemon=True)
    thread.start()
    try:
        watcher.event.wait(timeout_s + 5)
    finally:
        kafka_log.removeHandler(watcher)
    servers = client_config.get("bootstrap_servers")
    if watcher.fatal is not None:
        kind, exc = watcher.fatal
        if kind == "auth":
            user = client_config.get("sasl_plain_username")
            raise FatalKafkaError(
                f"Kafka at {servers} refused the credentials of user {user!r} "
                f"({client_config.get('sasl_mechanism')}): {exc}. Check LSTMAD_SASL_USERNAME / "
                "LSTMAD_SASL_PASSWORD (or [kafka] sasl_*)."
            )
        raise FatalKafkaError(
            f"TLS to Kafka at {servers} failed: {exc}. The broker's certificate is not trusted by "
            f"ssl_cafile={client_config.get('ssl_cafile')!r}; point LSTMAD_SSL_CAFILE at its CA."
        )
    error = done.get("error", TimeoutError("no answer"))
    from kafka.errors import KafkaConfigurationError

    if isinstance(error, KafkaConfigurationError | TypeError | ValueError):
        raise FatalKafkaError(f"invalid Kafka client configuration: {error}")
    if error is not None:
        raise BrokerUnavailable(f"no Kafka broker answered at {servers}: {error}")
