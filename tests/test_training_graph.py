"""training.graph: the in-graph normalisation and anchoring equal streamer.windows exactly."""

from __future__ import annotations

import numpy as np
import pytest

from streamer.windows import MODES, error_scale
from training.graph import Anchor, Normalise

pytestmark = pytest.mark.train


def windows(mode: str) -> np.ndarray:
    rng = np.random.default_rng(3)
    w = 20 + np.cumsum(rng.normal(size=(32, 12, 3)), axis=1)
    if mode != "ratio":
        w -= 20  # crosses zero: only ratio needs positive data
    w[0] = 5.0  # a flat window: zscore's epsilon keeps it finite
    return w.astype(np.float32)


@pytest.mark.parametrize("mode", MODES)
def test_anchor_scale_is_streamers_error_scale(mode: str) -> None:
    """prediction(out) = last + error_scale * out: out = 0 is naive persistence, out = 1 adds
    exactly one error-scale unit, so the daemon's normalised errors mean what training meant."""
    w = windows(mode)
    diff_scale = [0.5, 0.7, 2.0]
    anchor = Anchor(mode, 1, diff_scale)
    last = w[:, -1, 1]
    zero = anchor([w, np.zeros((32, 1), np.float32)]).numpy()[:, 0]
    one = anchor([w, np.ones((32, 1), np.float32)]).numpy()[:, 0]
    np.testing.assert_array_equal(zero, last)
    want = error_scale(w, 1, mode, diff_scale[1])  # type: ignore[arg-type]
    np.testing.assert_allclose(one - last, want, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("mode", MODES)
def test_normalise_matches_the_documented_formulas(mode: str) -> None:
    w = windows(mode).astype(np.float64)
    s = np.array([0.5, 0.7, 2.0])
    got = Normalise(mode, list(s))(w.astype(np.float32)).numpy()
    if mode == "ratio":
        want = w / w[:, :1] - 1
    elif mode == "zscore":
        mean = w.mean(axis=1, keepdims=True)
        want = (w - mean) / (w.std(axis=1, keepdims=True) + 1e-6 * (1 + np.abs(mean)))
    elif mode == "diff":
        want = np.diff(w, axis=1) / s
    else:
        want = w
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
