"""streamer.pipeline: the scoring core's contract (notes/pipeline_api.md) with fast fakes and
with real ONNX models.

Timeline of one stream, window 3, persistence forecast (f_k = p_k)::

    batch 1: p0 p1 p2 p3      window [p0 p1 p2] full at p2 -> f2; p3 scored against f2
    batch 2: p4               p4 scored against f3, made in batch 1 from [p1 p2 p3]
    next_predicted after batch 2: f4 = p4
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer import manifest as mf
from streamer.detect import AnomalyConfig
from streamer.model import load
from streamer.pipeline import DetectConfig, Pipeline, Points, Prepared, Result, forecast
from streamer.volatility import VolatilityConfig
from streamer.windows import error_scale
from tests.test_manifest import good_dict, write_model

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "streamer" / "models" / "default.onnx"


class Persistence:
    """numpy naive persistence (next = last), zscore error scale, counting predict calls."""

    def __init__(self, window: int = 3, features: tuple[str, ...] = ("value",)) -> None:
        self.window, self.features = window, features
        self.manifest = mf.parse(good_dict(window=window, features=list(features),
                                           target=features[0]))  # fmt: skip
        self.calls: list[int] = []

    def predict(self, windows: np.ndarray) -> np.ndarray:
        self.calls.append(len(windows))
        return windows[:, -1, 0].astype(np.float32)

    def error_scale(self, windows: np.ndarray) -> np.ndarray:
        return error_scale(windows, 0, "zscore")


class LinearAR(Persistence):
    """A non-trivial forecast: last + 0.5 * (last - previous)."""

    def predict(self, windows: np.ndarray) -> np.ndarray:
        self.calls.append(len(windows))
        w = windows[:, :, 0].astype(np.float64)
        return (w[:, -1] + 0.5 * (w[:, -1] - w[:, -2])).astype(np.float32)


def pts(streams: list[str], ts: list[int] | np.ndarray, values: np.ndarray | list) -> Points:
    v = np.asarray(values, dtype=np.float64)
    return Points(list(streams), np.asarray(ts, dtype=np.int64), v.reshape(len(streams), -1))


def canonical(points: Points, result: Result, offset: int = 0) -> tuple[list, list, list]:
    """Result with indexes replaced by (stream, ts), so differently batched runs compare."""
    key = [(points.streams[i], int(points.ts_ms[i])) for i in range(len(points.streams))]
    s = result.scored
    scored = [(key[i], s.predicted[j], s.actual[j], s.error[j], s.norm_error[j], s.score[j],
               s.threshold[j]) for j, i in enumerate(s.index)]  # fmt: skip
    events = [
        (e.type, e.status, e.stream, e.ts_ms, key[e.index], e.value, e.predicted, e.error,
         e.score, e.threshold, e.severity, e.episode_start_ms)
        for e in result.events
    ]  # fmt: skip
    rejected = [(key[r.index], r.reason) for r in result.rejected]
    return scored, events, rejected


def run_split(model: Persistence, points: Points, cuts: list[int], cfg: DetectConfig) -> tuple:
    p = Pipeline(model, cfg)
    out: tuple[list, list, list] = ([], [], [])
    bounds = [0, *sorted(set(cuts)), len(points.streams)]
    for a, b in itertools.pairwise(bounds):
        if a == b:
            continue
        part = Points(points.streams[a:b], points.ts_ms[a:b], points.values[a:b])
        for acc, got in zip(out, canonical(part, p.process(part, 0.0)), strict=True):
            acc.extend(got)
    return out


def interleaved(rng: np.random.Generator, streams: int, n: int, spikes: int = 4) -> Points:
    """n points over ``streams`` random walks in random interleaving, with a few spikes,
    duplicates and out-of-order timestamps. The spikes fall after the first quarter: one in
    a stream's warm-up would teach the detector its size and hide every later one."""
    who = rng.integers(0, streams, n)
    ts = np.zeros(n, dtype=np.int64)
    clock = np.zeros(streams, dtype=np.int64)
    for i, s in enumerate(who):
        clock[s] += int(rng.integers(1, 3)) * 1000
        ts[i] = clock[s]
    bad = rng.choice(n, max(1, n // 40), replace=False)
    ts[bad] -= 3000  # out of order or duplicate for that stream
    vals = np.cumsum(rng.normal(0, 1, n)) + 100
    vals[rng.choice(np.arange(n // 4, n), spikes, replace=False)] += 60
    return pts([f"s{s}" for s in who], ts, vals)


CFG = DetectConfig(initial_capacity=2)  # small, so tables grow during the tests
FAST = AnomalyConfig(warmup=5)  # short streams still reach the alerting phase
FAST_VOL = VolatilityConfig(warmup=10, long_span=60)


def test_timeline_from_the_docstring() -> None:
    m = Persistence(window=3)
    p = Pipeline(m, CFG)
    r1 = p.process(pts(["a"] * 4, [1, 2, 3, 4], [10.0, 11.0, 12.0, 14.0]), 0.0)
    np.testing.assert_array_equal(r1.scored.index, [3])
    assert r1.scored.predicted[0] == 12.0 and r1.scored.error[0] == 2.0
    np.testing.assert_allclose(r1.scored.norm_error, [2.0 / (np.std([10, 11, 12]) + 12e-6)])
    assert r1.scored.next_predicted == {"a": 14.0}
    r2 = p.process(pts(["a"], [5], [13.0]), 0.0)
    assert r2.scored.predicted[0] == 14.0 and r2.scored.next_predicted == {"a": 13.0}
    lo, hi = r2.scored.band("a")
    assert lo < 13.0 < hi
    assert m.calls == [2, 1]  # one predict per process(), every window that needed one


def test_one_predict_call_per_process_for_many_streams_and_points() -> None:
    m = LinearAR(window=4)
    p = Pipeline(m, CFG)
    rng = np.random.default_rng(0)
    points = interleaved(rng, streams=30, n=900)
    r = p.process(points, 0.0)
    assert len(m.calls) == 1 and m.calls[0] > 0
    assert len(r.scored.index) + len(r.rejected) <= 900 and p.stream_count() == 30
    assert np.all(np.diff(r.scored.index) > 0)  # arrival order


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.lists(st.integers(0, 300), max_size=6))
def test_batched_equals_one_at_a_time(seed: int, cuts: list[int]) -> None:
    """Any split of the same points into batches gives the same scores, events, rejections
    as feeding them one by one."""
    rng = np.random.default_rng(seed)
    points = interleaved(rng, streams=5, n=300, spikes=10)
    cfg = DetectConfig(FAST, FAST_VOL, initial_capacity=1)
    one_by_one = run_split(LinearAR(3), points, list(range(1, 300)), cfg)
    assert run_split(LinearAR(3), points, cuts, cfg) == one_by_one
    assert one_by_one[1], "the spikes must produce events for this test to mean something"


def run_overlapped(model: Persistence, points: Points, cuts: list[int], cfg: DetectConfig) -> tuple:
    """As the daemon runs batches: batch k+1 is prepared before batch k is finished, and
    batch k's forecasts are computed only after that."""
    p = Pipeline(model, cfg)
    out: tuple[list, list, list] = ([], [], [])
    bounds = [0, *sorted(set(cuts)), len(points.streams)]
    pending: tuple[Points, Prepared] | None = None
    parts = [
        Points(points.streams[a:b], points.ts_ms[a:b], points.values[a:b])
        for a, b in itertools.pairwise(bounds)
        if a < b
    ]
    for part in [*parts, None]:
        nxt = (part, p.prepare(part)) if part is not None else None
        if pending is not None:
            done, prep = pending
            result = p.finish(prep, *forecast(model, prep.x))
            for acc, got in zip(out, canonical(done, result), strict=True):
                acc.extend(got)
        pending = nxt
    return out


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.lists(st.integers(0, 300), max_size=6))
def test_next_batch_prepared_before_this_one_finishes_changes_nothing(
    seed: int, cuts: list[int]
) -> None:
    """Preparing batch k+1 before finishing batch k (the daemon's order, so the inference
    process works while the detectors run) gives exactly the sequential results: prepare
    reads nothing finish writes, even as new streams grow the tables in between."""
    rng = np.random.default_rng(seed)
    points = interleaved(rng, streams=5, n=300, spikes=10)
    cfg = DetectConfig(FAST, FAST_VOL, initial_capacity=1)
    sequential = run_split(LinearAR(3), points, cuts, cfg)
    assert run_overlapped(LinearAR(3), points, cuts, cfg) == sequential
    assert sequential[1], "the spikes must produce events for this test to mean something"


def test_out_of_order_and_duplicates_are_rejected_and_unused() -> None:
    m = Persistence(window=3)
    p = Pipeline(m, CFG)
    r = p.process(pts(["a", "a", "a", "b", "a", "a"], [5, 6, 6, 1, 4, 7],
                      [1.0, 2.0, 99.0, 5.0, 99.0, 3.0]), 0.0)  # fmt: skip
    assert [(j.index, j.reason) for j in r.rejected] == [(2, "out_of_order"), (4, "out_of_order")]
    np.testing.assert_array_equal(p.state["win"][p.index.get("a"), :, 0],
                                  [1.0, 2.0, 3.0])  # fmt: skip
    r = p.process(pts(["a"], [7], [4.0]), 0.0)  # equal to the last ts: a duplicate
    assert [j.reason for j in r.rejected] == ["out_of_order"] and not len(r.scored.index)


def test_stream_limit_rejects_new_streams_only() -> None:
    p = Pipeline(Persistence(), DetectConfig(max_streams=2, initial_capacity=1))
    r = p.process(pts(["a", "b", "c", "a", "c"], [1, 1, 1, 2, 2], [1, 2, 3, 4, 5]), 0.0)
    assert [(j.index, j.reason) for j in r.rejected] == [(2, "stream_limit"), (4, "stream_limit")]
    assert p.stream_count() == 2


def test_non_finite_and_float32_overflowing_values_are_rejected() -> None:
    p = Pipeline(Persistence(window=3), CFG)
    r = p.process(pts(["a", "b", "a", "a"], [1, 1, 2, 3], [1.0, np.nan, 1e39, -np.inf]), 0.0)
    assert [(j.index, j.reason) for j in r.rejected] == [
        (1, "non_finite"), (2, "non_finite"), (3, "non_finite")]  # fmt: skip
    assert p.stream_count() == 1 and p.state["count"][p.index.get("a")] == 1


def test_points_of_the_wrong_shape_are_refused() -> None:
    p = Pipeline(Persistence(), CFG)
    empty = p.process(Points([], np.empty(0, np.int64), np.empty(0)), 0.0)
    assert not len(empty.scored.index) and not empty.events and not empty.rejected
    with pytest.raises(ValueError, match=r"values shape \(2, 2\).*expected \(2,\) and \(2, 1\)"):
        p.process(Points(["a", "b"], np.array([1, 2]), np.ones((2, 2))), 0.0)
    with pytest.raises(ValueError, match="max_streams must be an integer >= 1"):
        DetectConfig(max_streams=0)


def spike_stream(n: int = 400, at: int = 300) -> np.ndarray:
    rng = np.random.default_rng(1)
    x = 50 + np.cumsum(rng.normal(0, 1, n))
    x[at] += 40
    return x


def test_evict_idle_frees_rows_and_resolves_open_episodes() -> None:
    p = Pipeline(Persistence(), DetectConfig(initial_capacity=1))
    x = spike_stream()
    p.process(pts(["old"] * 301, np.arange(301) * 1000, x[:301]), 0.0)  # ends on the spike
    p.process(pts(["new"], [400_000], [1.0]), 0.0)
    assert p.anomaly.table["open"][p.index.get("old")]
    events: list = []
    assert p.evict_idle(now_ms=400_000, idle_ms=60_000, events=events) == ["old"]
    assert p.stream_count() == 1 and "old" not in p.index
    (e,) = events
    assert (e.type, e.status, e.stream, e.index, e.ts_ms) == ("anomaly", "resolved", "old", -1,
                                                              300_000)  # fmt: skip
    assert e.episode_start_ms == 300_000
    p.process(pts(["newer"], [1], [2.0]), 0.0)  # reuses the freed row, with a clean state
    row = p.index.get("newer")
    assert p.state["count"][row] == 1 and not p.anomaly.table["open"][row]


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 399))
def test_export_import_continues_exactly(seed: int, cut: int) -> None:
    """process(A+B) == process(A), export, import into a fresh Pipeline, process(B)."""
    rng = np.random.default_rng(seed)
    points = interleaved(rng, streams=4, n=400, spikes=8)
    a = Points(points.streams[:cut], points.ts_ms[:cut], points.values[:cut])
    b = Points(points.streams[cut:], points.ts_ms[cut:], points.values[cut:])
    whole = canonical(points, Pipeline(LinearAR(3), CFG).process(points, 0.0))
    first = Pipeline(LinearAR(3), CFG)
    got_a = canonical(a, first.process(a, 0.0))
    states = first.export_state([*sorted(set(points.streams)), "never-seen"])
    assert "never-seen" not in states and all(isinstance(v, bytes) for v in states.values())
    second = Pipeline(LinearAR(3), DetectConfig(initial_capacity=1))
    second.process(pts(["other"], [1], [0.0]), 0.0)  # rows differ from the first pipeline
    second.import_state(states)
    got_b = canonical(b, second.process(b, 0.0))
    for w, x, y in zip(whole, got_a, got_b, strict=True):
        assert w == x + y


def test_state_is_compact_versioned_and_checked() -> None:
    p = Pipeline(Persistence(window=50), CFG)
    p.process(pts(["a"] * 60, np.arange(60), np.arange(60.0)), 0.0)
    blob = p.export_state(["a"])["a"]
    assert blob[:4] == b"LSST" and len(blob) == p.codec.nbytes
    # window 50 x 1 float32 = 200 of it, the seasonal history 80 x float32 = 320
    assert p.state_bytes_per_stream() < 900
    other = Pipeline(Persistence(window=4), CFG)
    with pytest.raises(
        ValueError, match="'a' is for window 50 x 1 features; this model has window 4"
    ):
        other.import_state({"a": blob})
    with pytest.raises(ValueError, match="exceed"):
        Pipeline(Persistence(window=50), DetectConfig(max_streams=1)).import_state(
            {"a": blob, "b": blob}
        )


V1_STATES = Path(__file__).resolve().parent / "data" / "state_v1.json"


def test_states_of_format_v1_are_restored_and_continue() -> None:
    """States the previous version wrote (format v1: the detectors' statistics in float64,
    see StateCodec) are read into this version's float32 columns: the streams stay warm,
    and the next 500 points give the same alerts as the old version gave, at the same
    points, with scores equal to float32 precision."""
    fixture = json.loads(V1_STATES.read_text())
    rng = np.random.default_rng(11)
    points = interleaved(rng, streams=4, n=1200, spikes=10)
    cut = fixture["cut"]
    b = Points(points.streams[cut:], points.ts_ms[cut:], points.values[cut:])
    states = {k: bytes.fromhex(v) for k, v in fixture["states"].items()}
    p = Pipeline(LinearAR(3), CFG)
    assert {int.from_bytes(v[4:6], "little") for v in states.values()} == {1}
    assert all(len(v) > p.codec.nbytes for v in states.values())  # v1 is the wider one
    p.import_state(states)
    scored, events, _ = canonical(b, p.process(b, 0.0))
    want_events, want_scored = fixture["events_after"], fixture["scored_after"]
    assert len(want_events) > 0 and len(events) == len(want_events)
    for got, want in zip(events, want_events, strict=True):
        exact = (0, 1, 2, 3, 10, 11)  # type, status, stream, ts, severity, episode start
        assert [got[i] for i in exact] == [want[i] for i in exact]
        np.testing.assert_allclose([got[i] for i in (5, 6, 7, 8, 9)], want[5:10], rtol=1e-5)
    assert [s[0] for s in scored] == [tuple(w[0]) for w in want_scored]
    np.testing.assert_array_equal([s[1] for s in scored], [w[1] for w in want_scored])
    np.testing.assert_allclose([s[5] for s in scored], [w[2] for w in want_scored], rtol=1e-5)
    v2 = p.export_state(sorted(states))  # and it is written back as v2
    assert {int.from_bytes(v[4:6], "little") for v in v2.values()} == {2}


def test_set_model_keeps_state_and_refuses_mismatches() -> None:
    p = Pipeline(Persistence(window=3), CFG)
    p.process(pts(["a"] * 5, np.arange(5), np.arange(5.0)), 0.0)
    p.set_model(LinearAR(window=3))
    r = p.process(pts(["a"], [9], [5.0]), 0.0)
    assert r.scored.predicted[0] == 4.0  # the forecast made before the reload is kept
    assert r.scored.next_predicted["a"] == 5.5  # the new model forecasts from now on
    with pytest.raises(ValueError, match="window 4, the running one 3"):
        p.set_model(Persistence(window=4))
    with pytest.raises(ValueError, match=r"features \('close', 'volume'\)"):
        p.set_model(Persistence(window=3, features=("close", "volume")))
    two = Pipeline(Persistence(window=3, features=("close", "volume")), CFG)
    other = Persistence(window=3, features=("close", "volume"))
    other.manifest = mf.parse(good_dict(window=3, features=["close", "volume"], target="volume"))
    with pytest.raises(ValueError, match="forecasts 'volume', the running one 'close'"):
        two.set_model(other)


class Broken(Persistence):
    def predict(self, windows: np.ndarray) -> np.ndarray:
        return np.full(len(windows), np.nan, dtype=np.float32)


def test_a_non_finite_forecast_is_reported_but_never_learnt() -> None:
    p = Pipeline(Broken(window=3), CFG)
    r = p.process(pts(["a"] * 10, np.arange(10), np.arange(10.0)), 0.0)
    assert len(r.scored.index) == 7 and np.isnan(r.scored.error).all() and not r.events
    assert p.anomaly.table["n_seen"][0] == 0


# ---------------------------------------------------------------- default thresholds at work
#
# Each stream below is its own scenario, all in ONE pipeline (the detectors are vectorised
# over streams), fed in batches of 250 points per stream:
#
#   t:        0 ........ 1500 ........ 1530 ........ 3000
#   spike:    sine+noise  | +12 sigma (one point)
#   dip:                  | -12 sigma (one point)
#   level:                | +10 sigma from here on
#   burst:                | noise x5 for 120 points
#   flat:                 | constant for 150 points
#   normal:   5,000 points of seasonal / random-walk / sine, no anomaly


def scenario(kind: str, rng: np.random.Generator, n: int = 3000, at: int = 1500) -> np.ndarray:
    t = np.arange(n, dtype=np.float64)
    sigma = 0.5
    x = 20 + 5 * np.sin(2 * np.pi * t / 97) + rng.normal(0, sigma, n)
    if kind == "spike":
        x[at] += 12 * sigma * 1.5
    elif kind == "dip":
        x[at] -= 12 * sigma * 1.5
    elif kind == "level":
        x[at:] += 10 * sigma
    elif kind == "burst":
        x[at : at + 120] += rng.normal(0, 5 * sigma, 120)
    elif kind == "flat":
        x[at : at + 150] = x[at - 1]
    return x


def run_streams(model: object, series: dict[str, np.ndarray], batch: int = 250) -> list:
    p = Pipeline(model, DetectConfig())  # type: ignore[arg-type]
    n = len(next(iter(series.values())))
    names = list(series)
    events = []
    for a in range(0, n, batch):
        b = min(n, a + batch)
        streams = [s for _ in range(a, b) for s in names]  # interleaved, like a topic
        ts = np.repeat(np.arange(a, b, dtype=np.int64) * 60_000, len(names))
        vals = np.stack([series[s][a:b] for s in names], axis=1).reshape(-1)
        events += p.process(pts(streams, ts, vals), 0.0).events
    return events


def opens(events: list, stream: str, kind: str = "anomaly") -> list[tuple[int, str]]:
    return [(e.ts_ms // 60_000, e.status) for e in events if e.stream == stream and e.type == kind]


@pytest.mark.parametrize("model_name", ["persistence", "default.onnx"])
def test_default_thresholds_catch_spike_dip_shift_burst_flatline(model_name: str) -> None:
    rng = np.random.default_rng(42)
    series = {k: scenario(k, rng) for k in ("spike", "dip", "level", "burst", "flat")}
    model = Persistence(window=50) if model_name == "persistence" else load(DEFAULT_MODEL)
    events = run_streams(model, series)
    for kind in ("spike", "dip", "level"):
        got = opens(events, kind)
        # open at the anomaly (within 2 points), then resolved once the forecast re-anchored
        assert got[0][1] == "open" and 1500 <= got[0][0] <= 1502, (kind, got)
        assert got[1][1] == "resolved" and got[1][0] < 1560, (kind, got)
        assert len([g for g in got if g[1] == "open"]) == 1, (kind, got)
    burst = opens(events, "burst", "volatility")
    assert burst[0][1] == "open" and 1500 <= burst[0][0] <= 1530, burst
    assert burst[1][1] == "resolved" and 1620 <= burst[1][0] <= 1700, burst
    flat = opens(events, "flat", "volatility")
    assert flat[0][1] == "open" and 1500 <= flat[0][0] <= 1530, flat
    assert flat[1][1] == "resolved" and 1650 <= flat[1][0] <= 1720, flat
    # No anomaly alert for the flat-line's own zero errors nor for its end.
    assert not [g for g in opens(events, "flat") if g[0] > 1550], opens(events, "flat")


def normal_series(rng: np.random.Generator, n: int = 5000) -> dict[str, np.ndarray]:
    t = np.arange(n, dtype=np.float64)
    return {
        "seasonal": 60 + 10 * np.sin(2 * np.pi * t / 288) + rng.normal(0, 1.2, n),
        "walk": 100 + np.cumsum(rng.normal(0, 0.4, n)),
        "sine": 20 + 5 * np.sin(2 * np.pi * t / 83) + rng.normal(0, 0.2, n),
    }


@pytest.mark.parametrize("seed", [0, 1])
def test_normal_data_gives_at_most_a_couple_of_alerts(seed: int) -> None:
    series = normal_series(np.random.default_rng(seed))
    events = run_streams(Persistence(window=50), series, batch=500)
    for name in series:
        n_open = sum(1 for e in events if e.stream == name and e.status == "open")
        assert n_open <= 2, (name, [(e.type, e.ts_ms // 60_000) for e in events])


# ---------------------------------------------------------------- real ONNX models


def test_real_onnx_persistence_model_file(tmp_path: Path) -> None:
    model = load(write_model(tmp_path / "m.onnx"))  # window 4, zscore, persistence graph
    rng = np.random.default_rng(4)
    points = interleaved(rng, streams=3, n=200)
    r = Pipeline(model, CFG).process(points, 0.0)
    last: dict[str, float] = {}
    seen: dict[str, list[float]] = {}
    for i in range(200):  # oracle: each accepted point is scored against the previous one
        s, v = points.streams[i], float(points.values[i, 0])
        if i in {j.index for j in r.rejected}:
            continue
        if len(seen.get(s, [])) >= 4:
            last[f"{s}@{i}"] = seen[s][-1]
        seen.setdefault(s, []).append(v)
    want = [last[f"{points.streams[i]}@{i}"] for i in r.scored.index]
    np.testing.assert_allclose(r.scored.predicted, np.float32(want))
    assert run_split(model, points, list(range(1, 200)), CFG) == run_split(model, points, [], CFG)


def test_default_model_batched_equals_one_at_a_time() -> None:
    model = load(DEFAULT_MODEL)
    assert model.window == 50
    rng = np.random.default_rng(9)
    points = interleaved(rng, streams=4, n=600, spikes=6)
    whole = run_split(model, points, [], CFG)
    pieces = run_split(model, points, list(range(0, 600, 7)), CFG)
    assert [e[:5] for e in whole[1]] == [e[:5] for e in pieces[1]] and whole[2] == pieces[2]
    a = np.array([row[1:] for row in whole[0]], dtype=np.float64)
    b = np.array([row[1:] for row in pieces[0]], dtype=np.float64)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)  # ORT may block batches differently


class TargetPersistence(Persistence):
    """Two features; forecasts the manifest's target column (``volume``, index 1)."""

    def __init__(self) -> None:
        super().__init__(window=3, features=("close", "volume"))
        self.manifest = mf.parse(good_dict(window=3, features=["close", "volume"],
                                           target="volume"))  # fmt: skip

    def predict(self, windows: np.ndarray) -> np.ndarray:
        return windows[:, -1, 1].astype(np.float32)

    def error_scale(self, windows: np.ndarray) -> np.ndarray:
        return error_scale(windows, 1, "zscore")


def test_multi_feature_points_score_the_target_column() -> None:
    p = Pipeline(TargetPersistence(), CFG)
    vals = np.array([[1.0, 10.0], [2.0, 12.0], [3.0, 11.0], [4.0, 15.0], [5.0, 14.0]])
    r = p.process(Points(["t"] * 5, np.arange(5), vals), 0.0)
    np.testing.assert_array_equal(r.scored.actual, [15.0, 14.0])
    np.testing.assert_array_equal(r.scored.predicted, [11.0, 15.0])
    np.testing.assert_allclose(r.scored.norm_error[0], 4.0 / (np.std([10, 12, 11]) + 12e-6))
    assert r.scored.next_predicted == {"t": 14.0}


def test_source_table_grows_resets_and_stays_out_of_the_exported_state() -> None:
    """The source partition of each row: recorded by set_source, -1 for a new, freed,
    dropped or just imported row, found again by partition; never exported."""
    p = Pipeline(Persistence(), DetectConfig(initial_capacity=1))
    names = [f"s{i}" for i in range(5)]
    p.process(pts(names, [1] * 5, np.zeros(5)), 0.0)  # the tables grow 1 -> 2 -> 4 -> 5
    assert p.source.capacity == p.state.capacity >= 5
    assert p.source_of(names).tolist() == [-1] * 5
    rows = p.set_source([*names, "nope"], np.array([0, 1, 2, 0, 1, 3]))
    assert rows.tolist() == [p.index.get(s) for s in names] + [-1]
    assert p.source_of(["s3", "nope"]).tolist() == [0, -1]
    assert p.streams_from({0}) == ["s0", "s3"] and p.streams_from([]) == []
    blob = p.export_state(["s1"])["s1"]
    assert len(blob) == p.codec.nbytes and all(t is not p.source for t in p.codec.tables)
    p.import_state({"s1": blob})  # replaced: the caller records the source it came with
    assert p.source_of(["s1"]).tolist() == [-1]
    assert p.drop(["s0"]) == ["s0"] and p.streams_from({0}) == ["s3"]
    parts: list[int] = []
    p.process(pts(["s2"], [100_000], [0.0]), 0.0)
    assert p.evict_idle(now_ms=100_000, idle_ms=50_000, partitions=parts) == ["s1", "s3", "s4"]
    assert parts == [-1, 0, 1]
    p.process(pts(["t"], [1], [0.0]), 0.0)  # reuses a freed row
    assert p.source_of(["t", "s2"]).tolist() == [-1, 2]
