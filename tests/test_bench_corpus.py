"""bench.detection.corpus: the synthetic NAB-layout corpus is seeded, labelled and readable."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench.detection import corpus, nab


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return corpus.generate(tmp_path_factory.mktemp("corpus"), seed=3, rows=1200)


def test_copies_of_a_kind_are_different_draws(small: Path) -> None:
    a = (small / "data/seasonal/level_shift_0.csv").read_text()
    assert a != (small / "data/seasonal/level_shift_1.csv").read_text()


def test_same_seed_same_bytes_other_seed_other_values(small: Path, tmp_path: Path) -> None:
    again = corpus.generate(tmp_path / "again", seed=3, rows=1200)
    other = corpus.generate(tmp_path / "other", seed=4, rows=1200)
    for name in ("labels.json", "data/sine/spike_0.csv", "data/seasonal/clean_0.csv"):
        assert (small / name).read_bytes() == (again / name).read_bytes()
    a = (small / "data/sine/spike_0.csv").read_text()
    assert a != (other / "data/sine/spike_0.csv").read_text()


def test_layout_covers_every_base_and_kind_plus_clean_files(small: Path) -> None:
    labels = json.loads((small / "labels.json").read_text())
    for base in corpus.BASES:
        for kind in corpus.KINDS:
            assert len(labels[f"{base}/{kind}_0.csv"]) == 2
            assert len(labels[f"{base}/{kind}_1.csv"]) == 2
        assert labels[f"{base}/clean_0.csv"] == labels[f"{base}/clean_2.csv"] == []
    assert len(labels) == len(corpus.BASES) * (2 * len(corpus.KINDS) + 3)


def test_windows_are_nab_sized_centred_on_onsets_after_probation(small: Path) -> None:
    files = corpus.load(small)
    for f in files:
        rows = nab.window_rows(f.ts_ms, f.windows, f.name)
        assert len(rows) == len(f.onsets_ms)
        for (lo, hi), onset in zip(rows, f.onsets_ms, strict=True):
            assert lo >= nab.probationary_length(len(f.ts_ms)), f.name
            assert hi - lo + 1 == int(0.10 * 1200 / 2), f.name
            at = int(np.searchsorted(f.ts_ms, onset))
            assert lo < at <= hi and abs((lo + hi) / 2 - at) <= 1, f.name
        assert np.all(f.values > 0), f.name
        assert np.all(np.diff(f.ts_ms) == corpus.STEP_S * 1000)


def test_each_anomaly_kind_really_changes_the_signal_at_its_onset() -> None:
    n, at = 1000, 500
    for base in corpus.BASES:
        for kind in corpus.KINDS:
            rng = np.random.default_rng(0)
            s = corpus.base_signal(base, n, rng)
            x = s.values.copy()
            corpus.inject(kind, s, x, at, np.random.default_rng(1))
            assert np.array_equal(x[:at], s.values[:at]), (base, kind)
            assert not np.allclose(x[at : at + 30], s.values[at : at + 30]), (base, kind)


def test_bad_files_are_rejected_naming_file_line_and_column(tmp_path: Path) -> None:
    (tmp_path / "data" / "c").mkdir(parents=True)
    (tmp_path / "labels.json").write_text(json.dumps({"c/f.csv": []}))
    path = tmp_path / "data" / "c" / "f.csv"
    path.write_text("timestamp,value\n2026-01-01 00:00:00,1\n2026-01-01 00:05:00,abc\n")
    with pytest.raises(ValueError, match=r"c/f\.csv line 3: column 'value'"):
        corpus.load(tmp_path)
    path.write_text("timestamp,value\nyesterday,1\n")
    with pytest.raises(ValueError, match=r"c/f\.csv line 2: bad timestamp"):
        corpus.load(tmp_path)
    path.write_text("time,v\n")
    with pytest.raises(ValueError, match="header must start with 'timestamp,value'"):
        corpus.load(tmp_path)
    (tmp_path / "labels.json").write_text(json.dumps({"c/missing.csv": []}))
    with pytest.raises(ValueError, match=r"'c/missing\.csv' is not in"):
        corpus.load(tmp_path)
