"""The manifest contract: parse() names the bad key; read() refuses files it cannot vouch for."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from streamer import manifest as mf
from streamer.protowire import WireError, wire_fields


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


REPO = Path(__file__).resolve().parent.parent
COMMITTED = sorted(
    [*(REPO / "streamer" / "models").glob("*.onnx"), *(REPO / "training" / "runs").rglob("*.onnx")]
)


def _len_field(num: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field (key and length as varints)."""
    out = bytearray()
    for v in ((num << 3) | 2, len(payload)):
        while v >= 0x80:
            out.append(v & 0x7F | 0x80)
            v >>= 7
        out.append(v)
    return bytes(out) + payload


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: str(p.relative_to(REPO)))
def test_wire_reader_equals_the_onnx_reader_on_committed_models(path: Path) -> None:
    data = path.read_bytes()
    model = onnx.load_model_from_string(data)
    digest, props = mf.wire_graph_and_props(data)
    assert digest == mf.graph_digest(model)
    assert props == {e.key: e.value for e in model.metadata_props}
    man, got = mf.read(path)
    assert got == data and man == mf._read_onnx(path, data)


def test_the_default_model_loads_without_importing_onnx() -> None:
    code = (
        "import sys; from streamer import model; "
        "m = model.load('streamer/models/default.onnx'); "
        "assert m.window == 50, m.window; "
        "assert 'onnx' not in sys.modules, sorted(k for k in sys.modules if 'onnx' in k)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr


def test_truncated_or_corrupt_files_get_the_onnx_readers_error(tmp_path: Path) -> None:
    data = write_model(tmp_path / "m.onnx").read_bytes()
    graph = next((a, b) for num, a, b in wire_fields(data) if num == mf.GRAPH_FIELD)
    flipped = bytearray(data)
    flipped[(graph[0] + graph[1]) // 2] ^= 0x01  # inside the graph: another graph or garbage
    cases = {"half": data[: len(data) // 2], "less1": data[:-1], "3bytes": data[:3],
             "flipped": bytes(flipped), "group": b"\x0b" + data}  # fmt: skip
    for name, bad in cases.items():
        p = tmp_path / f"{name}.onnx"
        p.write_bytes(bad)
        with pytest.raises(mf.ManifestError) as via_onnx:
            mf._read_onnx(p, bad)
        with pytest.raises(mf.ManifestError) as via_read:
            mf.read(p)
        assert str(via_read.value) == str(via_onnx.value), name
        assert re.search(r"not a valid ONNX file|checksum mismatch", str(via_read.value)), name
    with pytest.raises(WireError, match="runs past"):
        wire_fields(data[:-1])


def test_a_graph_split_in_two_fields_is_accepted_through_onnx(tmp_path: Path) -> None:
    """protobuf merges repeated occurrences of a message field; the wire reader does not,
    so it hands such a file to the onnx reader, which accepts it as before."""
    data = write_model(tmp_path / "m.onnx").read_bytes()
    a, b = next((a, b) for num, a, b in wire_fields(data) if num == mf.GRAPH_FIELD)
    num, _, end = wire_fields(data, a, b)[0]
    assert num == 1  # GraphProto.node: the first node, then the rest of the graph
    model = onnx.load_model_from_string(data)
    model.ClearField("graph")
    g = data[a:b]
    split = _len_field(mf.GRAPH_FIELD, g[: end - a]) + _len_field(mf.GRAPH_FIELD, g[end - a :])
    p = tmp_path / "split.onnx"
    p.write_bytes(model.SerializeToString() + split)
    with pytest.raises(WireError, match="2 graph fields"):
        mf.wire_graph_and_props(p.read_bytes())
    assert mf.read(p)[0] == mf.read(tmp_path / "m.onnx")[0]
