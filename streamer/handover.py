"""Per-stream state follows its input partition: checkpoint, restore on assignment, drop on
revocation, tombstone on eviction (the daemon's side of :mod:`streamer.statestore`).

Ordering the daemon keeps for every batch (the invariant: a committed offset never runs
ahead of the checkpointed state for it)::

    score ─► alerts/DLQ acked ─► checkpoint of the touched streams acked ─► commit offsets

* Crash after the alerts' ack, before the checkpoint's: the restored state is older, the
  replay re-applies those points and re-sends the same alerts (same ``alert_id``).
* Crash after the checkpoint's ack, before the commit: the replayed points have offsets at
  or below the state's recorded offset; :class:`streamer.scoring.Scorer` skips them.

On assignment (inside ``poll``, before any record of the new partitions is returned) the
states of those partitions are read back and imported into the route each stream maps to;
a state that no longer fits its route (window or features changed) is dropped with a
warning, and that stream warms up again. On revocation the loop has already delivered,
checkpointed and committed its last batch, so the streams of the revoked partitions are
just forgotten; the new owner restores them.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from streamer import statestore
from streamer.scoring import Scorer
from streamer.statestore import StateStore, StreamState

log = logging.getLogger("lstmad.state")
StateRecord = tuple[bytes, bytes, int]  # key (the stream), value (statestore.encode), partition


class Sender(Protocol):
    """What the handover sends through (``KafkaIO`` satisfies it)."""

    def send(
        self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None
    ) -> None: ...


class Handover:
    def __init__(
        self,
        scorer: Scorer,
        topic: str,
        client_config: Mapping[str, Any],
        restore_timeout_s: float,
    ) -> None:
        self.scorer = scorer
        self.topic = topic
        self.store = StateStore(topic, None, client_config)
        self.client_config = dict(client_config)
        self.restore_timeout_s = restore_timeout_s
        self.restored = scorer.metrics.state_restored
        self.checkpoints = scorer.metrics.state_checkpoints
        self.restore_seconds = scorer.metrics.state_restore_seconds

    def prepare(self, partitions: int) -> None:
        """Create the compacted state topic (``partitions`` = the input topic's) if missing,
        and add partitions if the input topic grew."""
        from kafka.admin import KafkaAdminClient, NewPartitions

        admin = KafkaAdminClient(**self.client_config)
        try:
            statestore.ensure_topic(admin, self.topic, partitions)
            (desc,) = admin.describe_topics([self.topic])
            have = len(desc.get("partitions") or ())
            if 0 < have < partitions:
                admin.create_partitions({self.topic: NewPartitions(total_count=partitions)})
                log.info(
                    "state topic grown to the input's partitions",
                    extra={"fields": {"topic": self.topic, "from": have, "to": partitions}},
                )
        finally:
            admin.close()

    def checkpoint(self, io: Sender, touched: Mapping[str, tuple[int, int]]) -> int:
        """Send the state of every touched stream (stream -> (partition, offset)); the caller
        awaits the acks before committing. Returns the number of records sent."""
        return self.send(io, self.records(touched))

    def records(self, touched: Mapping[str, tuple[int, int]]) -> list[StateRecord]:
        """The state record of every touched stream (stream -> (partition, offset)), encoded
        now, to be sent later (:meth:`send`): the daemon spreads one checkpoint's sends over
        its next loop iterations, so they are encoded while no batch is half applied."""
        by_route: dict[int, list[str]] = defaultdict(list)
        for s in touched:
            by_route[self.scorer.router.route_of(s)].append(s)
        out: list[StateRecord] = []
        for r, names in by_route.items():
            blobs = self.scorer.router.routes[r].pipeline.export_state(names)
            for s, blob in blobs.items():
                p, off = touched[s]
                out.append((s.encode("utf-8"), statestore.encode(StreamState(s, p, off, blob)), p))
        return out

    def send(self, io: Sender, records: Iterable[StateRecord]) -> int:
        """Send state records (:meth:`records`) to the state topic; returns how many."""
        n = 0
        for key, value, p in records:
            io.send(self.topic, key, value, partition=p)
            n += 1
        self.checkpoints.inc(n)
        return n

    def forget(self, io: Sender, gone: Mapping[str, int]) -> int:
        """Tombstones for evicted streams (stream -> partition; -1: never checkpointed)."""
        n = 0
        for s, p in gone.items():
            if p >= 0:
                io.send(self.topic, s.encode("utf-8"), None, partition=p)
                n += 1
        self.checkpoints.inc(n)
        return n

    def restore(self, partitions: Iterable[int]) -> int:
        """Import the states of ``partitions`` (replacing whatever is held for those streams)."""
        parts = sorted(set(partitions))
        if not parts:
            return 0
        t0 = time.monotonic()
        states = self.store.restore(parts, timeout_s=self.restore_timeout_s)
        by_route: dict[int, dict[str, StreamState]] = defaultdict(dict)
        for s, st in states.items():
            by_route[self.scorer.router.route_of(s)][s] = st
        n = 0
        for r, group in by_route.items():
            pipe = self.scorer.router.routes[r].pipeline
            blobs = {s: st.blob for s, st in group.items()}
            try:
                pipe.import_state(blobs)
                ok = list(group)
            except ValueError:  # one does not fit: import the ones that do, one by one
                ok = []
                for s, blob in blobs.items():
                    try:
                        pipe.import_state({s: blob})
                        ok.append(s)
                    except ValueError as exc:
                        log.warning(
                            "state not restored; the stream warms up again",
                            extra={"fields": {"stream": s, "error": str(exc)}},
                        )
            self.scorer.mark_restored(r, {s: (group[s].partition, group[s].offset) for s in ok})
            n += len(ok)
        took = time.monotonic() - t0
        self.restored.inc(n)
        self.restore_seconds.observe(took)
        self.scorer.metrics.active_streams.set(self.scorer.router.stream_count())
        log.info(
            "state restored",
            extra={"fields": {"partitions": parts, "streams": n, "seconds": round(took, 3)}},
        )
        return n
