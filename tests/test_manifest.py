"""The manifest contract: parse() names the bad key; read() refuses files it cannot vouch for."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from streamer import manifest as mf


def good_dict(**over: object) -> dict[str, object]:
    d: dict[str, object] = {
        "schema": mf.SCHEMA,
        "name": "t",
        "version": "1",
        "mode": "window",
        "window": 4,
        "features": ["value"],
        "target": "value",
        "normalisation": "zscore",
        "calibration": {
            "abs_error_quantiles": {"0.5": 0.5, "0.9": 1.5, "0.99": 3.0},
            "std": 1.0,
            "n": 100,
        },
        "graph_sha256": "0" * 64,
        "data_fingerprint": "sha256:x",
        "created_at": "2026-12-01T00:00:00Z",
    }
    d.update(over)
    return d


def persistence_model() -> onnx.ModelProto:
    """A real graph honouring the I/O contract: prediction = the window's last target value."""
    x = helper.make_tensor_value_info(mf.INPUT_NAME, TensorProto.FLOAT, ["batch", 4, 1])
    y = helper.make_tensor_value_info(mf.OUTPUT_NAME, TensorProto.FLOAT, ["batch", 1])
    starts = helper.make_tensor("starts", TensorProto.INT64, [1], [-1])
    ends = helper.make_tensor("ends", TensorProto.INT64, [1], [2**62])
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 1])
    nodes = [
        helper.make_node("Slice", [mf.INPUT_NAME, "starts", "ends", "axes"], ["last"]),
        helper.make_node("Reshape", ["last", "shape"], [mf.OUTPUT_NAME]),
    ]
    graph = helper.make_graph(nodes, "persist", [x], [y], [starts, ends, axes, shape])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def write_model(path: Path, **over: object) -> Path:
    model = persistence_model()
    man = mf.parse(good_dict(graph_sha256=mf.graph_digest(model), **over))
    mf.embed(model, man)
    onnx.save(model, path)
    return path


def test_round_trip_through_file_and_ort(tmp_path: Path) -> None:
    p = write_model(tmp_path / "m.onnx")
    man, data = mf.read(p)
    assert man.window == 4 and man.target_index == 0
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    out = sess.run(
        [mf.OUTPUT_NAME], {mf.INPUT_NAME: np.arange(8, dtype=np.float32).reshape(2, 4, 1)}
    )
    np.testing.assert_array_equal(out[0], [[3.0], [7.0]])
    assert mf.parse(man.to_dict()) == man


@pytest.mark.parametrize(
    ("over", "needle"),
    [
        ({"schema": "x"}, "schema"),
        ({"window": 1}, "'window'"),
        ({"target": "close"}, "target"),
        ({"normalisation": "log"}, "'normalisation'"),
        ({"features": ["a", "a"]}, "'features'"),
        ({"normalisation": "diff"}, "'diff_scale'"),
        ({"mode": "batch"}, "'mode'"),
    ],
)
def test_parse_names_the_bad_key(over: dict[str, object], needle: str) -> None:
    with pytest.raises(mf.ManifestError, match=needle):
        mf.parse(good_dict(**over))


def test_missing_calibration_quantile_is_named() -> None:
    d = good_dict()
    bad = copy.deepcopy(d["calibration"])
    assert isinstance(bad, dict)
    del bad["abs_error_quantiles"]["0.99"]
    with pytest.raises(mf.ManifestError, match=r"0\.99"):
        mf.parse({**d, "calibration": bad})


def test_file_without_manifest_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "bare.onnx"
    onnx.save(persistence_model(), p)
    with pytest.raises(mf.ManifestError, match=r"no 'lstmad\.manifest'"):
        mf.read(p)


def test_tampered_graph_is_refused(tmp_path: Path) -> None:
    p = write_model(tmp_path / "m.onnx")
    model = onnx.load(p)
    model.graph.node[1].name = "changed"
    onnx.save(model, p)
    with pytest.raises(mf.ManifestError, match="checksum"):
        mf.read(p)


def test_non_onnx_and_garbage_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "m.pkl").write_bytes(b"\x80\x04")
    with pytest.raises(mf.ManifestError, match=r"only \.onnx"):
        mf.read(tmp_path / "m.pkl")
    (tmp_path / "g.onnx").write_bytes(b"garbage")
    with pytest.raises(mf.ManifestError, match="not a valid ONNX"):
        mf.read(tmp_path / "g.onnx")
    model = persistence_model()
    model.metadata_props.add(key=mf.METADATA_KEY, value=json.dumps([1]))
    onnx.save(model, tmp_path / "l.onnx")
    with pytest.raises(mf.ManifestError, match="not a JSON object"):
        mf.read(tmp_path / "l.onnx")
