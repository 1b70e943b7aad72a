"""streamer.windows against plain-loop oracles.

series:  p0 p1 p2 p3 p4 p5        window = 3
w[0]:   [p0 p1 p2] -> target p3
w[1]:      [p1 p2 p3] -> target p4
w[2]:         [p2 p3 p4] -> target p5   (the window [p3 p4 p5] has no target)
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from streamer.windows import (
    ZSCORE_EPS,
    check_ratio_valid,
    error_scale,
    fit_diff_scale,
    sliding_windows,
    windows_and_targets,
)

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@given(
    arrays(np.float64, st.tuples(st.integers(4, 40), st.integers(1, 3)), elements=finite),
    st.integers(2, 4),
)
def test_sliding_windows_equal_one_at_a_time(series: np.ndarray, window: int) -> None:
    w = sliding_windows(series, window)
    assert w.shape == (len(series) - window + 1, window, series.shape[1])
    for i in range(len(w)):
        np.testing.assert_array_equal(w[i], series[i : i + window])


def test_windows_and_targets_timeline() -> None:
    series = np.arange(6.0)
    x, y = windows_and_targets(series, 3, 0)
    np.testing.assert_array_equal(x[:, :, 0], [[0, 1, 2], [1, 2, 3], [2, 3, 4]])
    np.testing.assert_array_equal(y, [3, 4, 5])


def test_short_series_is_rejected_with_lengths() -> None:
    with pytest.raises(ValueError, match="shorter than window"):
        windows_and_targets(np.arange(3.0), 3, 0)
    with pytest.raises(ValueError, match="shorter than one window"):
        sliding_windows(np.arange(2.0), 3)


@given(
    arrays(
        np.float64,
        st.tuples(st.integers(1, 10), st.integers(2, 8), st.integers(1, 2)),
        elements=st.floats(0.5, 100),
    )
)
def test_error_scale_matches_per_window_oracle(w: np.ndarray) -> None:
    for j in range(w.shape[2]):
        np.testing.assert_allclose(error_scale(w, j, "ratio"), [abs(win[0, j]) for win in w])
        want = [np.std(win[:, j]) + ZSCORE_EPS * (1 + abs(np.mean(win[:, j]))) for win in w]
        np.testing.assert_allclose(error_scale(w, j, "zscore"), want, rtol=1e-9)
        np.testing.assert_allclose(error_scale(w, j, "diff", 0.5), 0.5)
        np.testing.assert_allclose(error_scale(w, j, "none"), 1.0)


def test_flat_window_has_finite_positive_zscore_scale() -> None:
    s = error_scale(np.full((1, 5, 1), 7.0), 0, "zscore")
    assert 0 < s[0] < 1e-4


def test_ratio_mode_rejects_zero_and_sign_change_naming_column_and_row() -> None:
    check_ratio_valid(np.array([[1.0, 5.0], [2.0, 6.0]]), ["close", "volume"])
    with pytest.raises(ValueError, match=r"'volume'.*row 1"):
        check_ratio_valid(np.array([[1.0, 5.0], [2.0, 0.0]]), ["close", "volume"])
    with pytest.raises(ValueError, match=r"'close'.*sign changes at row 2"):
        check_ratio_valid(np.array([[1.0, 5.0], [2.0, 1.0], [-1.0, 1.0]]), ["close", "volume"])


def test_diff_scale_is_std_of_differences_and_never_zero() -> None:
    s = np.array([[0.0, 1.0], [1.0, 1.0], [3.0, 1.0]])
    np.testing.assert_allclose(fit_diff_scale(s), [np.std([1.0, 2.0]), 1.0])
