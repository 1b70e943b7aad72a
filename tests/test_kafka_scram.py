"""SCRAM-SHA-512 over TLS against a real broker with a self-signed certificate on loopback.

The broker gets a second listener (SASL_SSL) and one SCRAM user; the right credentials and
the broker's CA round-trip a message, wrong credentials or an untrusted certificate fail fast
with an authentication/SSL error rather than retrying forever.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator

import pytest
from kafka import KafkaConsumer, KafkaProducer

from streamer import preflight
from streamer.localkafka import BrokerError, LocalKafka
from tests.conftest import IN_CI

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
USER, PASSWORD = "lstmad", "s3cret-for-tests"


@pytest.fixture(scope="module")
def scram_broker() -> Iterator[LocalKafka]:
    broker = LocalKafka(scram_users={USER: PASSWORD})
    try:
        broker.start()
    except BrokerError as exc:
        if IN_CI:
            pytest.fail(f"CI=true and the SCRAM/TLS broker could not start: {exc}", pytrace=False)
        pytest.skip(f"SCRAM/TLS broker unavailable: {exc}")
    yield broker
    broker.stop()


def client_config(broker: LocalKafka, password: str = PASSWORD, cafile: str | None = None) -> dict:
    return {
        "bootstrap_servers": broker.sasl_bootstrap,
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": USER,
        "sasl_plain_password": password,
        "ssl_cafile": cafile or str(broker.ca_file),
        "request_timeout_ms": 10000,
    }


def test_right_credentials_round_trip(scram_broker: LocalKafka, topic_name: str) -> None:
    producer = KafkaProducer(acks="all", **client_config(scram_broker))
    producer.send(topic_name, b'{"stream":"a","ts":1,"value":1}').get(timeout=30)
    producer.close()
    consumer = KafkaConsumer(
        topic_name, auto_offset_reset="earliest", group_id="g-scram", **client_config(scram_broker)
    )
    got: list[bytes] = []
    deadline = time.monotonic() + 30
    while not got and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            got.extend(r.value for r in records)
    consumer.close()
    assert got == [b'{"stream":"a","ts":1,"value":1}']


def test_preflight_passes_with_right_credentials(scram_broker: LocalKafka) -> None:
    preflight.check(client_config(scram_broker), timeout_s=20)


def test_wrong_password_fails_fast_with_a_clear_error(scram_broker: LocalKafka) -> None:
    t0 = time.monotonic()
    with pytest.raises(
        preflight.FatalKafkaError, match="refused the credentials of user 'lstmad'"
    ) as info:
        preflight.check(client_config(scram_broker, password="wrong"), timeout_s=20)
    assert time.monotonic() - t0 < 10, "must not wait out kafka-python's retries"
    assert "wrong" not in str(info.value), "the password must never appear in the message"


def test_untrusted_certificate_fails_fast_with_a_clear_error(scram_broker: LocalKafka) -> None:
    # The system CA bundle does not contain the broker's self-signed certificate.
    cafile = ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt"
    t0 = time.monotonic()
    with pytest.raises(preflight.FatalKafkaError, match="certificate is not trusted"):
        preflight.check(client_config(scram_broker, cafile=cafile), timeout_s=20)
    assert time.monotonic() - t0 < 10


def test_broker_down_is_retriable_not_fatal() -> None:
    from streamer.localkafka import free_port

    with pytest.raises(preflight.BrokerUnavailable):
        preflight.check({"bootstrap_servers": f"127.0.0.1:{free_port()}"}, timeout_s=2)


def test_redacted_hides_secrets() -> None:
    cfg = preflight.redacted({"sasl_plain_password": "p", "sasl_plain_username": "u"})
    assert cfg == {"sasl_plain_password": "***", "sasl_plain_username": "u"}
