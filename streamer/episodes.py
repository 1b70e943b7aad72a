"""Alert episodes: the open / resolve state machine both detectors share. Pure numpy.

One episode per incident: ``open`` when a detector's trigger fires on an armed stream that
is not cooling down, ``resolved`` after ``resolve_points`` consecutive calm points, then a
cooldown of ``cooldown_points`` points during which nothing opens. Between the two events
nothing is emitted, however long the incident lasts (no alert storm)::

    point:    0 1 2 3 4 5 6 7 8 9 10 11 12     resolve_points 3, cooldown 2,
    trigger:  . . X X X . X . . . .  X  .      calm = no trigger
    events:       ^open             ^resolved   (the X at 11 falls in the cooldown)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from streamer.buffers import Column, Columns, Rows

WARNING, CRITICAL = 0, 1  # indexes into streamer.metrics.SEVERITIES

EPISODE_SPEC = {
    "open": Column("bool"),
    "ep_start": Column("int64"),  # event ms of the point that opened the episode
    "ep_len": Column("int32"),  # points since it opened
    "calm": Column("int32"),  # consecutive calm points while open
    "cool": Column("int32"),  # points left in the cooldown after a resolve
    "sev": Column("int8"),  # peak severity of the open episode
}


@dataclass(frozen=True)
class Transitions:
    """One round's episode changes, aligned with the round's rows."""

    opened: np.ndarray  # bool
    resolved: np.ndarray  # bool
    severity: np.ndarray  # int8, WARNING/CRITICAL (peak for resolved)
    episode_start: np.ndarray  # int64 ms


def step_episodes(
    t: Columns,
    rows: Rows,
    ts_ms: np.ndarray,
    trigger: np.ndarray,
    critical: np.ndarray,
    calm: np.ndarray,
    armed: np.ndarray,
    resolve_points: int,
    cooldown_points: int,
) -> Transitions:
    """Advance the episode state machine of ``rows`` by one point.

    closed --(armed & trigger & cool == 0)--> open --(resolve_points calm points)--> closed
    (then ``cooldown_points`` points during which nothing opens).
    """
    was_open = t["open"][rows]
    cool = t["cool"][rows]
    opened = ~was_open & armed & trigger & (cool == 0)
    calm_run = np.where(was_open & calm, t["calm"][rows] + 1, 0)
    resolved = was_open & (calm_run >= resolve_points)
    sev = np.where(
        opened, critical.astype(np.int8), np.maximum(t["sev"][rows], critical & was_open)
    ).astype(np.int8)
    now_open = (was_open & ~resolved) | opened
    t["open"][rows] = now_open
    t["calm"][rows] = np.where(resolved, 0, calm_run)
    t["ep_len"][rows] = np.where(opened, 1, np.where(now_open, t["ep_len"][rows] + 1, 0))
    t["ep_start"][rows] = np.where(opened, ts_ms, t["ep_start"][rows])
    start = t["ep_start"][rows]
    t["sev"][rows] = np.where(now_open, sev, 0)
    t["cool"][rows] = np.where(resolved, cooldown_points, np.maximum(cool - ~was_open, 0))
    return Transitions(opened, resolved, sev, start)


class Verdict(Protocol):
    """What another detector contributes to this one's episode (per row of the round)."""

    @property
    def trigger(self) -> np.ndarray: ...  # opens the episode
    @property
    def hold(self) -> np.ndarray: ...  # keeps an open episode from resolving
    @property
    def critical(self) -> np.ndarray: ...  # severity critical
    @property
    def score(self) -> np.ndarray: ...  # its score, reported when it alone opened
    @property
    def threshold(self) -> np.ndarray: ...  # the threshold that score was compared with
