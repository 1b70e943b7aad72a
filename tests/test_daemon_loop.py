"""The run loop's ordering promises, with a recording stand-in for the Kafka edge.

The real broker runs the same loop in tests/test_daemon_*.py; this fake only makes the
order of operations visible: outputs are sent, then acknowledged, then offsets committed;
a failed delivery is re-sent (only the unacknowledged records) until acknowledged and only
then committed; a stop request during the retries re-raises with nothing committed.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from streamer import config, statestore
from streamer.daemon import Daemon
from streamer.decode import Limits
from streamer.handover import Handover
from streamer.http import Health
from streamer.kafka_io import Batch, DeliveryError, Message
from streamer.metrics import Metrics
from streamer.routing import Router
from streamer.scoring import Scorer
from streamer.sdnotify import SdNotify
from tests import daemon_support as ds


class RecordingIO:
    def __init__(self, batches: list[list[Message]], fail_delivery: int = 0):
        self.batches = batches
        self.fail_delivery = fail_delivery  # this many deliveries fail (the 2nd record unacked)
        self.calls: list[tuple[str, Any]] = []
        self.broker_ok = True
        self.stop_after: Any = None
        self.rebalance_events: list[tuple[str, list[int]]] = []
        self.rebalancing = False  # KafkaIO's listener flag: revoked, not yet reassigned
        self.uncommitted: dict[tuple[str, int], int] = {}
        self.sent: list[tuple[str, bytes | None, bytes | None, int | None]] = []
        self.commit_waits: list[bool] = []
        self.checkpointed: list[tuple[str, bytes | None, bytes | None, int | None]] = []

    def open(self) -> None:
        self.calls.append(("open", None))

    def poll(self, timeout_ms: int) -> Batch:
        if not self.batches:
            if self.stop_after is not None:
                self.stop_after()
            return Batch()
        msgs = self.batches.pop(0)
        nxt: dict[tuple[str, int], int] = {}
        for m in msgs:
            nxt[(m.topic, m.partition)] = m.offset + 1
        return Batch(msgs, nxt)

    def reachable(self) -> bool:
        return True

    def assignment(self) -> list[tuple[str, int]]:
        return [("in", 0), ("in", 1)]

    def send(
        self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None
    ) -> None:
        self.calls.append(("send", topic))
        self.sent.append((topic, key, value, partition))
        if topic == "state":
            self.checkpointed.append((topic, key, value, partition))

    def detach(self) -> list[tuple[str, bytes | None, bytes | None, int | None]]:
        sent, self.sent = self.sent, []
        return sent

    def settled(self, sent: list[Any]) -> bool:
        return True

    def deliver(self, timeout_s: float, group: list[Any] | None = None) -> int:
        if group is not None and not group:  # as KafkaIO: nothing to wait for
            return 0
        sent = group if group is not None else self.sent
        if group is None:
            self.sent = []
        if self.fail_delivery:
            self.fail_delivery -= 1
            self.calls.append(("failed", len(sent)))
            raise DeliveryError("not acknowledged", sent[-1:])
        self.calls.append(("deliver", None))
        return len(sent)

    def reset_producer(self) -> None:
        self.calls.append(("reset", None))

    def commit(self, offsets: dict[tuple[str, int], int], wait: bool = True) -> bool:
        self.calls.append(("commit", dict(offsets)))
        self.commit_waits.append(wait)
        return True

    def lag(self) -> dict[tuple[str, int], int]:
        return {("in", 0): 0}

    def close(self, timeout_s: float = 10.0) -> None:
        self.calls.append(("close", None))

    def rejoin(self) -> None:
        self.calls.append(("rejoin", None))


def messages(streams: list[ds.Stream], lo: int, hi: int) -> list[Message]:
    out = []
    for n, (key, value) in enumerate(ds.interleave(streams, lo, hi)):
        part = 0 if key.endswith(b"spike") else 1
        out.append(Message("in", part, lo * len(streams) + n, key, value, 0))
    return out


def make(
    io: RecordingIO,
    tmp_path: Path,
    kafka: dict[str, Any] | None = None,
    mono: Callable[[], float] = time.monotonic,
    **state: float,
) -> tuple[Daemon, CollectorRegistry]:
    sections = {"model": {"path": str(ds.MODEL), "reload_poll_s": 0.0}, "state": state}
    cfg = config.from_dict({**sections, "kafka": kafka or {}}, tmp_path, env={})
    registry = CollectorRegistry()
    metrics = Metrics.create(registry)
    scorer = Scorer(Router(cfg.model, cfg.detect, metrics), Limits(), metrics)
    d = Daemon(cfg, io, scorer, metrics, Health(), SdNotify(None), mono=mono)  # type: ignore[arg-type]
    return d, registry


def test_outputs_are_acknowledged_before_offsets_are_committed(tmp_path: Path) -> None:
    streams = ds.make_streams(("spike", "normal"), "lp")
    batches = [messages(streams, 0, 200), messages(streams, 200, ds.N)]
    io = RecordingIO([*batches])
    d, registry = make(io, tmp_path)
    io.stop_after = d.request_stop
    assert d.run() == 0
    kinds = [c[0] for c in io.calls]
    assert kinds[0] == "open" and kinds[-1] == "close"
    commits = [c[1] for c in io.calls if c[0] == "commit"]
    assert commits == [
        {("in", 0): 399, ("in", 1): 400},
        {("in", 0): 2 * ds.N - 1, ("in", 1): 2 * ds.N},
    ]
    # open, then per batch: sends, one deliver (the acks), one commit; then close.
    letters = "".join(
        {"open": "o", "send": "s", "deliver": "d", "commit": "c", "close": "x"}[k] for k in kinds
    )
    assert re.fullmatch(r"o(s*dc){2}x", letters), letters
    assert ("send", "alerts") in io.calls  # the spike's open and resolved
    assert registry.get_sample_value("lstmad_points_total") == 2 * ds.N
    assert registry.get_sample_value("lstmad_ready") == 0  # stopped


def test_offsets_are_committed_on_the_interval_and_at_shutdown(tmp_path: Path) -> None:
    streams = ds.make_streams(("spike", "normal"), "ci")
    batches = [messages(streams, lo, lo + 100) for lo in range(0, 300, 100)]
    io = RecordingIO([*batches])
    d, _ = make(io, tmp_path, kafka={"commit_interval_s": 3600.0})
    io.stop_after = d.request_stop
    assert d.run() == 0
    commits = [c[1] for c in io.calls if c[0] == "commit"]
    # the first batch right away (nothing committed yet), the rest once, when stopping
    assert commits == [{("in", 0): 199, ("in", 1): 200}, {("in", 0): 599, ("in", 1): 600}]
    letters = "".join({"open": "o", "send": "s", "deliver": "d", "commit": "c", "close": "x"}[k]
                      for k, _ in io.calls)  # fmt: skip
    assert re.fullmatch(r"os*dcs*ds*dcx", letters), letters  # each batch acked before commit


def test_a_revocation_lands_the_batch_in_flight_and_hands_back_its_offsets(
    tmp_path: Path,
) -> None:
    streams = ds.make_streams(("spike",), "rv")
    io = RecordingIO([messages(streams, 0, ds.AT + 3)])
    d, registry = make(io, tmp_path, kafka={"commit_interval_s": 3600.0})
    d._next_commit = float("inf")
    d.step()  # launched: its forecasts computed while the next poll runs
    assert registry.get_sample_value("lstmad_points_total") == 0
    assert d._before_revoke() == {("in", 0): ds.AT + 3}
    assert registry.get_sample_value("lstmad_points_total") == ds.AT + 3
    assert ("deliver", None) in io.calls and ("send", "alerts") in io.calls
    assert not [c for c in io.calls if c[0] == "commit"]  # the listener commits those
    assert d._before_revoke() == {}  # nothing pending any more
    io.batches.append(messages(streams, ds.AT + 3, ds.AT + 6))
    d.step()
    d._crashed = True  # a failed loop closes the clients: no landing, no checkpoint then
    assert d._before_revoke() == {}
    assert registry.get_sample_value("lstmad_points_total") == ds.AT + 3


def test_a_checkpoint_commits_its_offsets_only_once_its_records_are_acked(
    tmp_path: Path,
) -> None:
    io = RecordingIO([])
    d, _ = make(io, tmp_path)
    acked = False
    io.settled = lambda sent: acked  # type: ignore[method-assign]
    record = ("state", b"s", b"blob", 0)
    d._checkpoint = ([record], {("in", 0): 5})
    d._settle(wait=False)
    assert not [c for c in io.calls if c[0] == "commit"]
    acked = True
    d._settle(wait=False)
    assert io.calls == [("deliver", None), ("commit", {("in", 0): 5})]
    assert d._checkpoint is None


def checkpointing(
    tmp_path: Path, batches: list[list[Message]], chunk: int
) -> tuple[Daemon, RecordingIO]:
    """A daemon with a real :class:`Handover` (its sends go through ``io``) and a 1 h commit
    interval: the first batch's commit is the only periodic one."""
    io = RecordingIO(batches)
    d, _ = make(io, tmp_path, kafka={"commit_interval_s": 3600.0}, checkpoint_chunk=chunk)
    d.handover = Handover(d.scorer, "state", {}, 60.0)
    return d, io


def state_sends(io: RecordingIO, counts: list[int]) -> list[int]:
    """``counts`` plus the state records sent since the ones it counts."""
    return [*counts, len(io.checkpointed) - sum(counts)]


def test_a_checkpoint_goes_out_a_chunk_per_iteration_and_commits_once_all_are_acked(
    tmp_path: Path,
) -> None:
    streams = ds.make_streams(("normal",) * 5, "ck")
    d, io = checkpointing(tmp_path, [messages(streams, lo, lo + 10) for lo in (0, 10, 20)], 2)
    d.step()  # batch 1 landed at once (nothing committed yet): checkpoint of 5, 2 sent
    sends = state_sends(io, [])
    assert sends == [2] and not io.commit_waits
    d.step()  # batch 2 polled and launched, 2 more sent
    sends = state_sends(io, sends)
    assert sends == [2, 2] and not io.commit_waits
    d.step()  # batch 2 landed, the last one sent: all acked, batch 1's offsets committed
    sends = state_sends(io, sends)
    assert sends == [2, 2, 1]
    commits = [c[1] for c in io.calls if c[0] == "commit"]
    assert commits == [{("in", 1): 50}] and io.commit_waits == [False]
    # Every record is the state batch 1 left, though the last ones went after batch 2 landed.
    states = [statestore.decode(v) for _, _, v, _ in io.checkpointed if v is not None]
    assert sorted(st.stream for st in states) == sorted(s.name for s in streams)
    assert {st.offset for st in states} == set(range(45, 50))
    d._land()
    d._commit()  # the forced path (shutdown, eviction): everything at once, waited for
    assert state_sends(io, sends)[-1] == 5 and io.commit_waits == [False, True]


def test_an_idle_loop_or_a_revocation_sends_the_rest_of_a_checkpoint_at_once(
    tmp_path: Path,
) -> None:
    streams = ds.make_streams(("normal",) * 5, "ci")
    d, io = checkpointing(tmp_path, [messages(streams, 0, 10)], 1)
    d.step()
    sends = state_sends(io, [])
    assert sends == [1]
    d.step()  # nothing polled: the other 4 in this iteration, then committed
    assert state_sends(io, sends) == [1, 4] and io.commit_waits == [False]

    d, io = checkpointing(tmp_path, [messages(streams, 10, 20)], 1)
    d.step()
    sends = state_sends(io, [])
    assert d._before_revoke() == {("in", 1): 100}
    assert state_sends(io, sends) == [1, 4] and not d._unsent
    assert not io.commit_waits  # the listener commits those


def test_a_failed_delivery_is_resent_then_committed(tmp_path: Path) -> None:
    streams = ds.make_streams(("spike",), "lf")
    io = RecordingIO([messages(streams, 0, ds.AT + 3)], fail_delivery=2)
    d, registry = make(io, tmp_path, retry_backoff_s=0.01)
    io.stop_after = d.request_stop
    assert d.run() == 0
    # the spike's open alert: sent, not acked twice (re-sent each time), acked, committed
    assert io.calls[1:] == [
        ("send", "alerts"), ("failed", 1), ("reset", None), ("send", "alerts"), ("failed", 1),
        ("reset", None), ("send", "alerts"), ("deliver", None),
        ("commit", {("in", 0): ds.AT + 3}), ("close", None),
    ]  # fmt: skip
    assert registry.get_sample_value("lstmad_ready") == 0


def test_a_stop_during_delivery_retries_commits_nothing_and_re_raises(tmp_path: Path) -> None:
    streams = ds.make_streams(("spike",), "lf")
    io = RecordingIO([messages(streams, 0, 10)], fail_delivery=1_000_000)
    d, _ = make(io, tmp_path, retry_backoff_s=0.01)
    real = io.deliver

    def deliver(timeout_s: float, group: list[Any] | None = None) -> int:
        if io.fail_delivery < 1_000_000 - 3:
            d.request_stop()
        return real(timeout_s, group)

    io.deliver = deliver  # type: ignore[method-assign]
    with pytest.raises(DeliveryError):
        d.run()
    assert not [c for c in io.calls if c[0] == "commit"]
    assert io.calls[-1] == ("close", None)


def test_idle_streams_are_evicted_and_their_open_episodes_resolved(tmp_path: Path) -> None:
    spike = ds.make_streams(("level_shift",), "ev")
    io = RecordingIO([messages(spike, 0, ds.AT + 2)])
    d, registry = make(io, tmp_path, idle_evict_s=3600.0, evict_interval_s=1.0)
    sent: list[dict[str, Any]] = []
    real_publish = d._publish

    def publish(out: Any) -> None:
        sent.extend(doc for _, doc in out.alerts)
        real_publish(out)

    d._publish = publish  # type: ignore[method-assign]
    d.step()  # the batch: the level shift opens an episode
    assert [(a["status"], a["source"] is not None) for a in sent] == [("open", True)]
    d._next_evict = 0.0
    d.step()  # the stream's last point is two days old: evicted, episode resolved
    assert [(a["status"], a["source"]) for a in sent[1:]] == [("resolved", None)]
    assert dataclasses.asdict(d.cfg.state)["idle_evict_s"] == 3600.0
    assert registry.get_sample_value("lstmad_evicted_streams_total") == 1
    assert registry.get_sample_value("lstmad_active_streams") == 0


SIGNAL_SCRIPT = """
import os, signal, sys, time
from streamer.serve import _install_signals

class FakeDaemon:
    stopping = False
    def request_stop(self):
        FakeDaemon.stopping = True
        print("stop requested", flush=True)

class FakeRouter:
    def request_reload(self):
        print("reload requested", flush=True)

_install_signals(FakeDaemon(), FakeRouter(), timeout_s=float(sys.argv[1]))
os.kill(os.getpid(), signal.SIGHUP)
os.kill(os.getpid(), signal.SIGTERM)
if sys.argv[2] == "twice":
    os.kill(os.getpid(), signal.SIGTERM)
time.sleep(30)  # a loop that never finishes its batch
"""


@pytest.mark.parametrize(
    ("mode", "timeout_s", "code", "needle"),
    [
        ("twice", 30.0, 128 + 15, "second signal: exiting at once"),
        ("once", 0.5, 1, "shutdown exceeded [kafka] shutdown_timeout_s"),
    ],
)
def test_second_signal_and_shutdown_deadline_exit_at_once(
    mode: str, timeout_s: float, code: int, needle: str
) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SIGNAL_SCRIPT, str(timeout_s), mode],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
        cwd=ds.REPO,
    )
    assert proc.returncode == code, proc.stderr
    assert "reload requested" in proc.stdout and "stop requested" in proc.stdout
    assert needle in proc.stderr


def test_a_rebalance_in_progress_is_not_ready_and_is_logged_once_it_lasts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Between a revocation and the next assignment kafka-python still lists the old
    partitions; the daemon must report none (readiness fails) and say when it lasts."""
    clock = [1000.0]
    io = RecordingIO([])
    d, registry = make(io, tmp_path, mono=lambda: clock[0])
    d.health.models_loaded = True
    d._tick(clock[0])
    assert d.health.assigned == ("in:0", "in:1") and d.health.ready(clock[0])[0]

    io.rebalancing = True  # as the listener sets it on revocation
    caplog.set_level("INFO", logger="lstmad.daemon")
    for dt in (0.0, 29.0, 2.0, 10.0):
        clock[0] += dt
        d._tick(clock[0])
        ok, body = d.health.ready(clock[0])
        assert not ok and body["checks"]["assigned"] is False, body
        assert registry.get_sample_value("lstmad_ready") == 0
    warned = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1 and warned[0].fields["seconds"] == 31.0  # type: ignore[attr-defined]

    io.rebalancing = False  # the listener saw the new assignment
    clock[0] += 1.0
    d._tick(clock[0])
    assert d.health.assigned == ("in:0", "in:1") and d.health.ready(clock[0])[0]
    done = [r for r in caplog.records if r.getMessage() == "rebalance completed"]
    assert len(done) == 1 and done[0].fields["seconds"] == 42.0  # type: ignore[attr-defined]


def test_the_rebalance_listener_flags_a_rebalance_from_revocation_to_assignment(
    tmp_path: Path,
) -> None:
    from kafka.structs import TopicPartition as TP

    from streamer.kafka_io import KafkaIO, _listener

    cfg = config.from_dict({"kafka": {"input_topic": "in"}}, tmp_path, env={})
    io = KafkaIO(cfg.kafka, Metrics.create(CollectorRegistry()))
    listener = _listener(io)
    assert io.rebalancing is False
    listener.on_partitions_revoked([TP("in", 0)])
    assert io.rebalancing is True
    listener.on_partitions_assigned([TP("in", 0), TP("in", 1)])
    assert io.rebalancing is False
    assert io.rebalance_events == [("revoked", [0]), ("assigned", [0, 1])]


def test_a_rebalance_stuck_past_rejoin_after_s_gets_a_new_consumer(tmp_path: Path) -> None:
    clock = [1000.0]
    io = RecordingIO([])
    io.rebalancing = True
    d, registry = make(io, tmp_path, kafka={"rejoin_after_s": 60.0}, mono=lambda: clock[0])
    rejoins = []
    for _ in range(16):  # 10 s a tick: 150 s
        d._tick(clock[0])
        rejoins.append(sum(1 for c in io.calls if c[0] == "rejoin"))
        clock[0] += 10.0
    # at 60 s, then 60 s after that new member's rebalance began (at 120 s)
    assert rejoins == [0] * 6 + [1] * 6 + [2] * 4, rejoins
    assert registry.get_sample_value("lstmad_kafka_errors_total", {"operation": "rejoin"}) == 2

    io.rebalancing, clock[0] = False, clock[0] + 1000.0
    d._tick(clock[0])
    assert sum(1 for c in io.calls if c[0] == "rejoin") == 2  # none once it completed


def test_rejoin_after_s_zero_never_replaces_the_consumer(tmp_path: Path) -> None:
    clock = [0.0]
    io = RecordingIO([])
    io.rebalancing = True
    d, _ = make(io, tmp_path, kafka={"rejoin_after_s": 0.0}, mono=lambda: clock[0])
    for _ in range(10):
        d._tick(clock[0])
        clock[0] += 100.0
    assert not [c for c in io.calls if c[0] == "rejoin"]
