"""streamer.model.load: validated files serve; files that cannot serve are refused at load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from streamer import manifest as mf
from streamer.model import load
from tests.test_manifest import good_dict, persistence_model, write_model


def test_loaded_model_predicts_one_value_per_window(tmp_path: Path) -> None:
    m = load(write_model(tmp_path / "m.onnx"))
    x = np.arange(12, dtype=np.float32).reshape(3, 4, 1)
    np.testing.assert_array_equal(m.predict(x), [3, 7, 11])
    assert m.predict(np.empty((0, 4, 1))).shape == (0,)
    assert len(m.sha256) == 64 and m.window == 4 and m.features == ("value",)
    np.testing.assert_allclose(
        m.error_scale(x), np.std(x[:, :, 0], axis=1) + 1e-6 * (1 + x.mean((1, 2)))
    )


def test_window_mismatch_between_graph_and_manifest_is_refused(tmp_path: Path) -> None:
    with pytest.raises(mf.ManifestError, match="does not match the manifest's window 8"):
        load(write_model(tmp_path / "m.onnx", window=8))


def test_stateful_manifest_is_not_served(tmp_path: Path) -> None:
    with pytest.raises(mf.ManifestError, match="serves 'window' models"):
        load(write_model(tmp_path / "m.onnx", mode="stateful"))


def test_wrong_io_names_are_refused(tmp_path: Path) -> None:
    model = persistence_model()
    model.graph.output[0].name = "out"
    model.graph.node[1].output[0] = "out"
    man = mf.parse({**good_dict(), "graph_sha256": mf.graph_digest(model)})
    mf.embed(model, man)
    onnx.save(model, tmp_path / "m.onnx")
    with pytest.raises(mf.ManifestError, match="graph I/O"):
        load(tmp_path / "m.onnx")


def test_predict_in_chunks_equals_one_call(tmp_path: Path) -> None:
    import streamer.model as model_mod

    m = load(write_model(tmp_path / "m.onnx"))
    x = np.random.default_rng(0).normal(size=(2 * model_mod.MAX_BATCH + 7, 4, 1)).astype(np.float32)
    np.testing.assert_array_equal(m.predict(x), x[:, -1, 0])
