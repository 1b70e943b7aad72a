"""Oracle tests for bench.detection.nab: hand-derived NAB scores on tiny hand-made files.

Notation used below: S(x) = 2 / (1 + e^(5x)) - 1 = -tanh(5x / 2), so S(-1) = tanh(2.5).

File of 100 rows, one row per second, probation = floor(0.15 * 100) = 15 rows:

    row:   0 ........ 14 | 15 ...... 39 | 40 ..... 49 | 50 ........ 99
           probationary  | before window| window (w=10)| after the window
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.detection import nab

TS = np.arange(100, dtype=np.int64) * 1000
WIN = [(40_000, 49_000)]
STD = nab.PROFILES["standard"]
LOW_FP = nab.PROFILES["reward_low_FP"]
LOW_FN = nab.PROFILES["reward_low_FN"]
MAX_TP = math.tanh(2.5)


def detections(*rows: int) -> np.ndarray:
    d = np.zeros(100, dtype=bool)
    d[list(rows)] = True
    return d


def test_scaled_sigmoid_matches_its_closed_form_and_clips_beyond_three() -> None:
    assert nab.scaled_sigmoid(-1.0) == pytest.approx(math.tanh(2.5))
    assert nab.scaled_sigmoid(-0.5) == pytest.approx(0.84828, abs=1e-5)  # NAB's docstring
    assert nab.scaled_sigmoid(0.0) == pytest.approx(0.0)
    assert nab.scaled_sigmoid(1.0) == pytest.approx(-0.98661, abs=1e-5)
    assert nab.scaled_sigmoid(3.0) == pytest.approx(-math.tanh(7.5))
    assert nab.scaled_sigmoid(3.01) == -1.0


def test_probationary_length_is_15_percent_capped_at_750_rows() -> None:
    assert nab.probationary_length(100) == 15
    assert nab.probationary_length(4999) == 749
    assert nab.probationary_length(5001) == 750
    assert nab.probationary_length(100_000) == 750


def test_detection_at_the_left_edge_is_worth_the_full_tp_weight() -> None:
    fs = nab.score_file(TS, detections(40), WIN, STD)
    assert fs.score == pytest.approx(1.0)
    assert (fs.windows, fs.first_detection, fs.tp_rows, fs.fp_rows) == (1, [40], 1, 0)


def test_detection_at_the_right_edge_is_worth_S_of_minus_one_over_width() -> None:
    # position = -(49 - 49 + 1) / 10 = -0.1 -> S(-0.1) / S(-1) = tanh(0.25) / tanh(2.5)
    fs = nab.score_file(TS, detections(49), WIN, STD)
    assert fs.score == pytest.approx(math.tanh(0.25) / MAX_TP)


def test_a_window_counts_once_with_its_earliest_detection() -> None:
    # rows 45 and 47: the best is 45, position -(49 - 45 + 1) / 10 = -0.5
    fs = nab.score_file(TS, detections(45, 47), WIN, STD)
    assert fs.score == pytest.approx(math.tanh(1.25) / MAX_TP)
    assert fs.tp_rows == 2


def test_missed_window_costs_the_fn_weight_of_each_profile() -> None:
    none = detections()
    assert nab.score_file(TS, none, WIN, STD).score == pytest.approx(-1.0)
    assert nab.score_file(TS, none, WIN, LOW_FP).score == pytest.approx(-1.0)
    assert nab.score_file(TS, none, WIN, LOW_FN).score == pytest.approx(-2.0)


def test_false_positives_before_any_window_cost_the_full_fp_weight() -> None:
    # rows 20 and 30 precede the window: -0.11 each (standard), -0.22 (reward_low_FP)
    d = detections(20, 30, 40)
    assert nab.score_file(TS, d, WIN, STD).score == pytest.approx(1.0 - 2 * 0.11)
    assert nab.score_file(TS, d, WIN, LOW_FP).score == pytest.approx(1.0 - 2 * 0.22)


def test_false_positives_after_a_window_cost_less_the_closer_they_are() -> None:
    # row 50: |49 - 50| / (10 - 1) = 1/9 -> 0.11 * S(1/9) = -0.11 * tanh(5/18)
    # row 59: 10/9 -> -0.11 * tanh(25/9); row 90: 41/9 > 3 -> -0.11
    near = nab.score_file(TS, detections(50), WIN, STD)
    assert near.score == pytest.approx(-1.0 - 0.11 * math.tanh(5 / 18))
    mid = nab.score_file(TS, detections(59), WIN, STD)
    assert mid.score == pytest.approx(-1.0 - 0.11 * math.tanh(25 / 9))
    far = nab.score_file(TS, detections(90), WIN, STD)
    assert far.score == pytest.approx(-1.0 - 0.11)
    assert near.fp_rows == mid.fp_rows == far.fp_rows == 1


def test_probationary_detections_are_ignored() -> None:
    fs = nab.score_file(TS, detections(0, 5, 14, 40), WIN, STD)
    assert fs.score == pytest.approx(1.0)
    assert fs.fp_rows == 0


def test_window_inside_the_probationary_period_is_neither_tp_nor_fn() -> None:
    fs = nab.score_file(TS, detections(3), [(2_000, 5_000)], STD)
    assert (fs.score, fs.null_score, fs.windows) == (0.0, 0.0, 0)


def test_window_straddling_the_probationary_period_scores_with_its_full_width() -> None:
    # window rows 10..19 (w = 10); row 15 is the first scored: -(19 - 15 + 1) / 10 = -0.5
    fs = nab.score_file(TS, detections(12, 15), [(10_000, 19_000)], STD)
    assert fs.score == pytest.approx(math.tanh(1.25) / MAX_TP)
    assert fs.window_rows == [(15, 19)]


def test_window_edges_between_rows_snap_inwards_like_nab_window() -> None:
    fs = nab.score_file(TS, detections(40), [(39_500, 49_400)], STD)
    assert fs.window_rows == [(40, 49)]
    assert fs.score == pytest.approx(1.0)


def test_normalisation_maps_null_to_0_and_perfect_to_100() -> None:
    fs = nab.score_file(TS, detections(49), WIN, STD)
    assert nab.normalised(fs.null_score, fs.null_score, 1, STD) == 0.0
    assert nab.normalised(1.0, fs.null_score, 1, STD) == 100.0
    # right-edge detection: 100 * (tanh(.25)/tanh(2.5) + 1) / 2
    expected = 100 * (math.tanh(0.25) / MAX_TP + 1) / 2
    assert nab.normalised(fs.score, fs.null_score, 1, STD) == pytest.approx(expected)
    assert expected == pytest.approx(62.41, abs=0.01)


def test_bad_input_is_rejected_with_the_file_name() -> None:
    with pytest.raises(ValueError, match=r"f\.csv: anomaly window 0"):
        nab.score_file(TS, detections(), [(200_000, 300_000)], STD, where="f.csv")
    with pytest.raises(ValueError, match="overlaps"):
        nab.score_file(TS, detections(), [(40_000, 49_000), (45_000, 60_000)], STD)
    with pytest.raises(ValueError, match="strictly increasing"):
        nab.score_file(TS[::-1], detections(), [], STD)
    with pytest.raises(ValueError, match="undefined"):
        nab.normalised(0.0, 0.0, 0, STD)


def test_window_metrics_pool_files_and_measure_time_from_the_onset() -> None:
    a = nab.score_file(TS, detections(20, 44), WIN, STD)  # one FP, window hit 2 rows in
    b = nab.score_file(TS, detections(), WIN, STD)  # window missed
    m = nab.window_metrics({"a": (TS, a), "b": (TS, b)}, onsets={"a": [42_000], "b": [42_000]})
    assert (m.windows, m.detected, m.alerts, m.alerts_in_window) == (2, 1, 2, 1)
    assert (m.recall, m.precision) == (0.5, 0.5)
    assert m.f1 == pytest.approx(0.5)
    assert (m.median_ttd_s, m.median_ttd_rows) == (2.0, 2.0)


def _oracle(detected: np.ndarray, rows: list[tuple[int, int]], p: nab.Profile) -> float:
    """A per-row loop written from NAB's rules, independent of the vectorised code."""

    def s(x: float) -> float:
        return -1.0 if x > 3 else 2 / (1 + math.exp(5 * x)) - 1

    n = len(detected)
    prob = min(math.floor(0.15 * n), 750)
    best = {k: -p.fn_weight for k, (lo, hi) in enumerate(rows) if hi >= prob}
    fp, prev = 0.0, None
    for i in range(n):
        k = next((k for k, (lo, hi) in enumerate(rows) if lo <= i <= hi), None)
        if detected[i] and i >= prob:
            if k is not None:
                lo, hi = rows[k]
                best[k] = max(best[k], s(-(hi - i + 1) / (hi - lo + 1)) * p.tp_weight / s(-1))
            elif prev is None:
                fp -= p.fp_weight
            else:
                fp += p.fp_weight * s(abs(prev[1] - i) / max(prev[1] - prev[0], 1))
        if k is not None and i == rows[k][1]:
            prev = rows[k]
    return sum(best.values()) + fp


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(20, 300),
    data=st.data(),
    profile=st.sampled_from(sorted(nab.PROFILES)),
)
def test_vectorised_score_equals_a_row_by_row_loop(
    n: int, data: st.DataObject, profile: str
) -> None:
    cuts = sorted(data.draw(st.sets(st.integers(0, n - 1), max_size=6)))
    rows = [(cuts[i], cuts[i + 1]) for i in range(0, len(cuts) - 1, 2)]
    detected = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    ts = np.arange(n, dtype=np.int64) * 60_000
    windows = [(int(ts[lo]), int(ts[hi])) for lo, hi in rows]
    p = nab.PROFILES[profile]
    got = nab.score_file(ts, detected, windows, p).score
    assert got == pytest.approx(_oracle(detected, rows, p), abs=1e-9)
