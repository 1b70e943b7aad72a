"""``lstmad serve`` itself against a SCRAM-SHA-512 over TLS listener (a broker of this module's
own, self-signed CA on loopback). The right credentials score data and alert; a wrong
password or an untrusted CA end the process within seconds with a clear error and exit code
2, not a retry storm. The password comes from LSTMAD_SASL_PASSWORD_FILE and never appears
in the output."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamer.localkafka import LocalKafka
from tests import daemon_support as ds
from tests import reliability_support as rs

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
USER, PASSWORD = "lstmad-daemon", "pw-9f3c1e77-never-logged"


@pytest.fixture(scope="module")
def broker() -> Iterator[LocalKafka]:
    with LocalKafka(scram_users={USER: PASSWORD}) as b:
        yield b


def scram_config(tmp_path: Path, broker: LocalKafka, topics: dict[str, str], port: int,
                 cafile: Path) -> Path:  # fmt: skip
    kafka = {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": USER,
        "ssl_cafile": str(cafile),
        "request_timeout_ms": 5000,
    }
    return ds.write_config(tmp_path / "s.toml", broker.sasl_bootstrap, topics, port, kafka=kafka)


def secret_env(tmp_path: Path, password: str) -> dict[str, str]:
    f = tmp_path / "sasl_password"
    f.write_text(password + "\n")
    return {"LSTMAD_SASL_PASSWORD_FILE": str(f)}


def test_right_credentials_score_and_alert(broker: LocalKafka, tmp_path: Path) -> None:
    topics = ds.topics_for(f"au-{uuid.uuid4().hex[:8]}")
    ds.create_topics(
        broker.bootstrap,
        {topics["input_topic"]: 2, topics["alert_topic"]: 1, topics["dlq_topic"]: 1},
    )
    streams = ds.make_streams(("spike", "dip", "normal"), "a")
    feed = ds.interleave(streams)
    want = rs.reference_ids(feed)
    port = ds.new_port()
    config = scram_config(tmp_path, broker, topics, port, broker.ca_file)
    ds.produce(broker.bootstrap, topics["input_topic"], feed)
    with ds.daemon(config, port, tmp_path / "ok.log", secret_env(tmp_path, PASSWORD)) as d:
        d.wait_ready(partitions=2)
        docs = rs.alert_docs(broker.bootstrap, topics["alert_topic"], want, 60)
        assert d.metric("lstmad_points_total") == len(feed)
        code, _ = d.stop()
    assert code == 0, d.tail()
    assert {x["alert_id"] for x in docs} == want
    log = d.tail(10**7)
    assert "SASL_SSL" in log and PASSWORD not in log


@pytest.mark.parametrize("case", ["wrong_password", "untrusted_ca"])
def test_wrong_credentials_or_ca_exit_fast_and_clearly(
    broker: LocalKafka, tmp_path: Path, case: str
) -> None:
    topics = ds.topics_for(f"ax-{uuid.uuid4().hex[:8]}")
    port = ds.new_port()
    password = PASSWORD + "-wrong" if case == "wrong_password" else PASSWORD
    cafile = broker.ca_file
    if case == "untrusted_ca":  # a well-formed CA bundle that did not sign the broker's cert
        cafile = Path("/etc/ssl/certs/ca-certificates.crt")
        assert cafile.exists()
    config = scram_config(tmp_path, broker, topics, port, cafile)
    t0 = time.monotonic()
    with ds.daemon(config, port, tmp_path / "bad.log", secret_env(tmp_path, password)) as d:
        code = d.proc.wait(timeout=30)
    took = time.monotonic() - t0
    log = d.tail(10**7)
    assert code == 2, log[-3000:]
    assert took < 20, took
    assert "kafka refused the connection" in log
    needle = "auth" if case == "wrong_password" else "certificate"
    assert needle in log.lower(), log[-3000:]
    assert PASSWORD not in log and password not in log
    print(f"\n[auth] {case}: exit {code} after {took:.1f}s")
