"""A single-node Apache Kafka (KRaft) on 127.0.0.1, for the tests, the demo and the benchmarks.

No Docker and no tarball: the broker's own jars come from Maven Central through the small
Maven project in ``tests/kafka_broker`` (``make kafka-jars``), and run on this machine's
Java as ``kafka.Kafka`` with a bounded heap, on free loopback ports, with a throw-away data
directory. :meth:`LocalKafka.start` returns once a metadata request through kafka-python
succeeds; :meth:`LocalKafka.stop` ends the JVM and removes the data directory. The JVM is
also ended when this process dies, however it dies (``PR_SET_PDEATHSIG``), so a crashed
test run leaves no broker behind.

Only a developer tool: the daemon never imports this module.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BROKER_PROJECT = REPO / "tests" / "kafka_broker"
JAR_DIR = BROKER_PROJECT / "target" / "lib"

_LOG4J2 = """\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = {level}
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = {level}
logger.apache.name = org.apache.kafka
logger.apache.level = {level}
"""


_STORE_PASSWORD = "lstmad-test-only"


class BrokerError(RuntimeError):
    """The local broker could not be fetched, formatted or started; the message says why."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fetch_jars(quiet: bool = True) -> Path:
    """Make sure the broker's jars are in ``JAR_DIR`` (Maven caches them in ~/.m2)."""
    stamp = JAR_DIR / ".fetched"
    if stamp.exists():
        return JAR_DIR
    if shutil.which("mvn") is None:
        raise BrokerError("Maven (mvn) is not installed: it fetches the Kafka broker's jars")
    cmd = [
        "mvn",
        "-B",
        "-f",
        str(BROKER_PROJECT / "pom.xml"),
        "dependency:copy-dependencies",
        "-DoutputDirectory=target/lib",
        "-DincludeScope=runtime",
    ]
    if quiet:
        cmd.insert(2, "-q")
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BrokerError(
            f"fetching the Kafka jars failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        )
    stamp.touch()
    return JAR_DIR


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGKILL it when the process that started it dies."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@dataclass
class LocalKafka:
    """One KRaft broker+controller. Use as a context manager, or start()/stop()."""

    heap: str = "512m"
    startup_timeout: float = 60.0
    log_level: str = "WARN"
    extra_properties: Mapping[str, str] = field(default_factory=dict)
    port: int = 0
    controller_port: int = 0
    data_dir: Path | None = None
    keep_data: bool = False
    # SCRAM-SHA-512 over TLS: a second listener with a self-signed certificate and these users
    # (name -> password), next to the PLAINTEXT one the harness itself uses.
    scram_users: Mapping[str, str] | None = None
    sasl_port: int = 0
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _owns_dir: bool = field(default=False, init=False, repr=False)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs."""
        return self._proc.pid if self._proc is not None else None

    @property
    def sasl_bootstrap(self) -> str:
        return f"127.0.0.1:{self.sasl_port}"

    @property
    def ca_file(self) -> Path:
        """PEM of the broker's self-signed certificate: the CA a TLS client must trust."""
        assert self.data_dir is not None
        return self.data_dir / "ca.pem"

    @property
    def log_file(self) -> Path:
        assert self.data_dir is not None
        return self.data_dir / "broker.log"

    def __enter__(self) -> LocalKafka:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _properties(self) -> dict[str, str]:
        assert self.data_dir is not None
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{self.controller_port}",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.data_dir / "log"),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
            "log.flush.interval.messages": "9223372036854775807",
        }
        if self.scram_users is not None:
            store = self.data_dir / "broker.p12"
            props["listeners"] += f",SASL_SSL://127.0.0.1:{self.sasl_port}"
            props["advertised.listeners"] += f",SASL_SSL://127.0.0.1:{self.sasl_port}"
            props["listener.security.protocol.map"] += ",SASL_SSL:SASL_SSL"
            props["sasl.enabled.mechanisms"] = "SCRAM-SHA-512"
            props["listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"] = (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            )
            props["ssl.keystore.location"] = str(store)
            props["ssl.keystore.type"] = "PKCS12"
            props["ssl.keystore.password"] = _STORE_PASSWORD
            props["ssl.key.password"] = _STORE_PASSWORD
        props.update(self.extra_properties)
        return props

    def _make_certificate(self) -> None:
        """A self-signed certificate for 127.0.0.1/localhost, made with the JDK's keytool."""
        assert self.data_dir is not None
        keytool = shutil.which("keytool")
        if keytool is None:
            raise BrokerError("keytool (from the JDK) is needed for the TLS listener")
        store = self.data_dir / "broker.p12"
        common = ["-keystore", str(store), "-storepass", _STORE_PASSWORD, "-storetype", "PKCS12"]
        for cmd in (
            [
                "-genkeypair",
                "-alias",
                "broker",
                "-keyalg",
                "RSA",
                "-keysize",
                "2048",
                "-dname",
                "CN=localhost",
                "-ext",
                "SAN=ip:127.0.0.1,dns:localhost",
                "-validity",
                "7",
                "-keypass",
                _STORE_PASSWORD,
            ],
            ["-exportcert", "-rfc", "-alias", "broker", "-file", str(self.ca_file)],
        ):
            proc = subprocess.run(
                [keytool, *cmd, *common], capture_output=True, text=True, check=False
            )
            if proc.returncode != 0:
                raise BrokerError(f"keytool {cmd[0]} failed: {proc.stdout}{proc.stderr}")

    def _java(self, *args: str, heap: str | None = None) -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise BrokerError("java is not installed: the Kafka broker runs on the JVM (Java 17+)")
        assert self.data_dir is not None
        opts = [
            f"-Xmx{heap or self.heap}",
            "-Xms64m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
        ]
        return [java, *opts, "-cp", str(JAR_DIR / "*"), *args]

    def format_storage(self) -> None:
        assert self.data_dir is not None
        props = self.data_dir / "server.properties"
        props.write_text("".join(f"{k}={v}\n" for k, v in self._properties().items()))
        (self.data_dir / "log4j2.properties").write_text(
            _LOG4J2.format(log=self.log_file, level=self.log_level)
        )
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        scram: list[str] = []
        for name, password in (self.scram_users or {}).items():
            scram += ["--add-scram", f"SCRAM-SHA-512=[name={name},password={password}]"]
        proc = subprocess.run(
            self._java(
                "kafka.tools.StorageTool",
                "format",
                "--standalone",
                f"--cluster-id={cluster_id}",  # "-t ID" breaks when the base64 ID starts with "-"
                "-c",
                str(props),
                *scram,
                heap="256m",
            ),
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise BrokerError(f"kafka-storage format failed: {proc.stdout}{proc.stderr}")

    def start(self) -> str:
        """Start the broker; return its bootstrap address once it answers metadata requests."""
        if self._proc is not None:
            return self.bootstrap
        fetch_jars()
        self.port = self.port or free_port()
        self.controller_port = self.controller_port or free_port()
        if self.scram_users is not None:
            self.sasl_port = self.sasl_port or free_port()
        if self.data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix="lstmad-kafka-"))
            self._owns_dir = True
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not (self.data_dir / "log" / "meta.properties").exists():
            if self.scram_users is not None:
                self._make_certificate()
            self.format_storage()
        props = self.data_dir / "server.properties"
        out = (self.data_dir / "stdout.log").open("ab")
        self._proc = subprocess.Popen(
            self._java("kafka.Kafka", str(props)),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        out.close()
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self.bootstrap

    def _wait_ready(self) -> None:
        from kafka import (
            KafkaAdminClient,
        )  # late: keep `python -m streamer.localkafka --help` light

        deadline = time.monotonic() + self.startup_timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise BrokerError(
                    f"the broker exited with code {self._proc.returncode}; "
                    f"see {self.data_dir}:\n{self._tail()}"
                )
            try:
                admin = KafkaAdminClient(
                    bootstrap_servers=self.bootstrap,
                    request_timeout_ms=3000,
                    client_id="lstmad-localkafka",
                )
                try:
                    admin.list_topics()
                    return
                finally:
                    admin.close()
            except Exception as exc:  # not up yet: any client error means "retry"
                last = exc
                time.sleep(0.2)
        raise BrokerError(
            f"the broker did not answer a metadata request within "
            f"{self.startup_timeout:.0f}s (last error: {last!r}):\n{self._tail()}"
        )

    def _tail(self, n: int = 4000) -> str:
        assert self.data_dir is not None
        text = ""
        for name in ("stdout.log", "broker.log"):
            p = self.data_dir / name
            if p.exists():
                text += p.read_text(errors="replace")[-n:]
        return text

    def stop(self, kill: bool = False) -> None:
        """Stop the broker (SIGTERM, then SIGKILL after 20 s) and remove its data directory."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if self._owns_dir and not self.keep_data and self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None

    def restart(self, down_for: float = 0.0) -> None:
        """Stop the JVM, keep its data and ports, optionally wait, and start it again."""
        keep, self.keep_data = self.keep_data, True
        try:
            self.stop()
        finally:
            self.keep_data = keep
        if down_for:
            time.sleep(down_for)
        self.start()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None


@contextlib.contextmanager
def running_broker(**kwargs: object) -> Iterator[LocalKafka]:
    broker = LocalKafka(**kwargs)  # type: ignore[arg-type]
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(
        prog="python -m streamer.localkafka",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--port", type=int, default=0, help="client port (default: a free one)")
    ap.add_argument("--heap", default="512m")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    with running_broker(port=args.port, heap=args.heap) as broker:
        print(
            f"kafka ready at {broker.bootstrap} in {time.monotonic() - t0:.1f}s "
            f"(data in {broker.data_dir}); Ctrl-C stops it",
            flush=True,
        )
        stop = {"now": False}

        def _stop(*_: object) -> None:
            stop["now"] = True

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        while not stop["now"] and broker.running:
            time.sleep(0.2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
