"""Shared fixtures. The real-Kafka fixture is session-scoped: one broker for the whole run.

Tests marked ``kafka`` get a bootstrap address from a broker this session starts (see
``streamer/localkafka.py``). Under ``CI=true`` a broker that cannot start FAILS those tests;
elsewhere they skip with a message saying how to enable them.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator

import pytest

from streamer.localkafka import BrokerError, LocalKafka

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[LocalKafka]:
    broker = LocalKafka()
    t0 = time.monotonic()
    try:
        broker.start()
    except BrokerError as exc:
        if IN_CI:
            pytest.fail(f"CI=true and the real Kafka broker could not start: {exc}", pytrace=False)
        pytest.skip(
            f"real Kafka broker unavailable ({exc}); install Java 17+ and Maven, "
            "then `make kafka-jars`, to run the Kafka tests"
        )
    print(f"\n[kafka] broker ready at {broker.bootstrap} in {time.monotonic() - t0:.1f}s")
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: LocalKafka) -> str:
    return kafka_broker.bootstrap


@pytest.fixture
def topic_name(request: pytest.FixtureRequest) -> str:
    """A fresh topic name per test, so tests sharing the broker never see each other's data."""
    base = request.node.name.replace("[", "-").replace("]", "").replace("_", "-")[:60]
    return f"{base}-{uuid.uuid4().hex[:8]}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "kafka_bootstrap" in getattr(item, "fixturenames", ()) or "kafka_broker" in getattr(
            item, "fixturenames", ()
        ):
            item.add_marker(pytest.mark.kafka)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """Under CI=true nothing may skip: a skipped test there is a test that did not run."""
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, which is a failure here: {report.longrepr}"
