"""training.data and training.pipeline: bad rows are named; windows equal streamer's windows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamer.windows import error_scale, windows_and_targets
from training.config import TrainingConfig, parse
from training.data import DataError, Stream, load, target_ranges
from training.pipeline import normalised_target, random_batches, strided, window_set


def cfg_for(tmp_path: Path, data: str, **over: Any) -> TrainingConfig:
    d: dict[str, Any] = {
        "data": data,
        "features": ["close", "volume"],
        "target": "close",
        "output": "m.onnx",
        "artifacts": "runs",
        "window": 4,
        "time_column": "ts",
    }
    d.update(over)
    return parse(d, tmp_path)


def write_csv(tmp_path: Path, rows: list[str], header: str = "ts,close,volume") -> Path:
    p = tmp_path / "d.csv"
    p.write_text("\n".join([header, *rows]) + "\n")
    return p


def rows(n: int) -> list[str]:
    return [f"{i},{100 + i},{1000 + 10 * i}" for i in range(n)]


def test_csv_loads_in_feature_order(tmp_path: Path) -> None:
    write_csv(tmp_path, rows(40), header="ts,volume,close")
    (s,) = load(cfg_for(tmp_path, "d.csv"))
    assert s.values.shape == (40, 2)
    assert s.values[0].tolist() == [1000.0, 100.0]  # picked by name, not by file position


@pytest.mark.parametrize(
    ("body", "header", "message"),
    [
        (["0,1,2"], "ts,close", "missing column(s) ['volume']"),
        ([*rows(10), "10,nan,3", *rows(30)[11:]], None, "line 12, column 'close'"),
        ([*rows(10), "10,11,inf"], None, "line 12, column 'volume'"),
        ([*rows(10), "10,abc,3"], None, "value 'abc' is not a number"),
        ([*rows(10), "5,1,1"], None, "line 12, column 'ts': time does not increase"),
        (rows(6), None, "too short for window 4"),
        ([*rows(10), "10,1"], None, "line 12: 2 fields"),
    ],
)
def test_bad_csv_names_the_row_and_column(
    tmp_path: Path, body: list[str], header: str | None, message: str
) -> None:
    write_csv(tmp_path, body, header or "ts,close,volume")
    with pytest.raises(DataError) as err:
        load(cfg_for(tmp_path, "d.csv"))
    assert message in str(err.value)


def test_ratio_mode_rejects_zero_and_sign_changes(tmp_path: Path) -> None:
    body = rows(40)
    body[20] = "20,0,1200"
    write_csv(tmp_path, body)
    with pytest.raises(DataError, match=r"stream 'd'.*'close'.*zero value at row 20"):
        load(cfg_for(tmp_path, "d.csv", normalisation="ratio"))
    body[20] = "20,-3,1200"
    write_csv(tmp_path, body)
    with pytest.raises(DataError, match="sign changes at row 20"):
        load(cfg_for(tmp_path, "d.csv", normalisation="ratio"))
    assert load(cfg_for(tmp_path, "d.csv", normalisation="zscore"))  # fine there


def write_jsonl(tmp_path: Path, msgs: list[dict[str, Any]]) -> Path:
    p = tmp_path / "d.jsonl"
    p.write_text("".join(json.dumps(m) + "\n" for m in msgs))
    return p


def ops(n: int) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        out.append({"stream": "a", "ts": 1000 * i, "value": float(i)})
        out.append(
            {"stream": "b", "ts": f"2026-12-01T00:{i // 60:02d}:{i % 60:02d}Z", "value": 2.0 * i}
        )
    return out


def test_jsonl_groups_streams(tmp_path: Path) -> None:
    write_jsonl(tmp_path, ops(40))
    cfg = cfg_for(tmp_path, "d.jsonl", features=["value"], target="value")
    a, b = load(cfg)
    assert (a.name, b.name) == ("a", "b")
    np.testing.assert_array_equal(b.values[:, 0], 2.0 * np.arange(40))
    (only,) = load(cfg_for(tmp_path, "d.jsonl", features=["value"], target="value", streams=["b"]))
    assert only.name == "b"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m[5].pop("value"), "line 6: stream 'b': neither 'value' nor 'values'"),
        (lambda m: m[6].update(ts=0), "line 7: stream 'a': 'ts' does not increase"),
        (lambda m: m[4].update(value=float("nan")), "line 5: stream 'a', feature 'value'"),
        (lambda m: m[3].update(values={"x": 1}), "line 4: stream 'b': missing feature 'value'"),
        (lambda m: m[2].update(ts="yesterday"), "line 3: stream 'a': timestamp 'yesterday'"),
    ],
)
def test_bad_jsonl_names_the_line(tmp_path: Path, edit: Any, message: str) -> None:
    msgs = ops(40)
    edit(msgs)
    write_jsonl(tmp_path, msgs)
    with pytest.raises(DataError) as err:
        load(cfg_for(tmp_path, "d.jsonl", features=["value"], target="value"))
    assert message in str(err.value)


def test_unknown_stream_is_named(tmp_path: Path) -> None:
    write_jsonl(tmp_path, ops(40))
    with pytest.raises(DataError, match=r"\['zz'\] named in training.streams"):
        load(cfg_for(tmp_path, "d.jsonl", features=["value"], target="value", streams=["zz"]))


def test_splits_partition_targets_by_time(tmp_path: Path) -> None:
    # rows:    0 ........ W ......... a ......... b ......... T
    # targets:            [ train   )[ validation)[  test    )
    cfg = cfg_for(tmp_path, "d.csv", window=5)
    r = target_ranges(100, cfg)
    assert r == {"train": (5, 70), "validation": (70, 85), "test": (85, 100)}


def test_gathered_windows_equal_streamers_windows(tmp_path: Path) -> None:
    """Oracle: the on-the-fly windows are exactly windows_and_targets, split by target row."""
    rng = np.random.default_rng(0)
    streams = [Stream("a", rng.normal(size=(60, 2))), Stream("b", rng.normal(size=(45, 2)))]
    cfg = cfg_for(tmp_path, "d.csv", window=6)
    for split in ("train", "validation", "test"):
        ws = window_set(streams, cfg, split)
        x, y, k = ws.gather(np.arange(len(ws)))
        want_x, want_y, want_k = [], [], []
        for i, s in enumerate(streams):
            wx, wy = windows_and_targets(s.values, 6, 0)
            lo, hi = target_ranges(len(s.values), cfg)[split]
            want_x.append(wx[lo - 6 : hi - 6])
            want_y.append(wy[lo - 6 : hi - 6])
            want_k.append(np.full(hi - lo, i))
        np.testing.assert_allclose(x, np.concatenate(want_x).astype(np.float32))
        np.testing.assert_array_equal(y[:, 0], np.concatenate(want_y))
        np.testing.assert_array_equal(k, np.concatenate(want_k))


@pytest.mark.parametrize("mode", ["ratio", "zscore", "diff", "none"])
def test_random_batches_target_the_normalised_change(tmp_path: Path, mode: str) -> None:
    rng = np.random.default_rng(1)
    s = Stream("a", 50 + np.cumsum(rng.normal(size=(300, 2)), axis=0))
    cfg = cfg_for(tmp_path, "d.csv", window=8, batch_size=16, normalisation=mode)
    diff_scale = np.array([0.5, 2.0])
    x, z = next(random_batches(window_set([s], cfg, "train"), cfg, diff_scale, seed=0))
    assert x.shape == (16, 8, 2) and z.shape == (16, 1)
    # Recover each window's target row from its first value to check the formula directly.
    start = np.array([np.flatnonzero(np.isclose(s.values[:, 0], w[0, 0]))[0] for w in x])
    y = s.values[start + 8, 0]
    want = (y - x[:, -1, 0]) / error_scale(x, 0, mode, 0.5)  # type: ignore[arg-type]
    np.testing.assert_allclose(z[:, 0], want, rtol=1e-5)
    np.testing.assert_allclose(normalised_target(x, y, cfg, diff_scale), want, rtol=1e-12)


def test_strided_is_bounded_and_ordered() -> None:
    assert strided(5, 10).tolist() == [0, 1, 2, 3, 4]
    idx = strided(1_000_000, 1000)
    assert len(idx) == 1000 and idx[0] == 0 and idx[-1] == 999_999 and np.all(np.diff(idx) > 0)
