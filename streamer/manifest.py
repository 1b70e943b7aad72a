"""The model manifest: the JSON that travels inside the ONNX file (``metadata_props``).

One ONNX file is the whole contract between trainer and daemon (DESIGN.md). The manifest says
how to feed the graph (window length, feature order, target) and how to read its errors
(normalisation mode, residual calibration), and it carries the honest comparison with naive
persistence. :func:`parse` validates a manifest dict and names the offending key;
:func:`read` takes one out of a model file and checks the graph checksum it records.

Schema ``lstmad.manifest/v1``::

    {
      "schema": "lstmad.manifest/v1",
      "name": "ops-default", "version": "1",
      "mode": "window" | "stateful",
      "window": 50,
      "features": ["value"], "target": "value",
      "normalisation": "ratio" | "zscore" | "diff" | "none",
      "diff_scale": [0.013],                 # per feature, diff mode only (else omitted/null)
      "data_fingerprint": "sha256:...",
      "metrics": {"test": {"model": {"rmse": .., "mae": ..}, "naive": {...}, "skill": ..}, ...},
      "beats_naive": true,
      "calibration": {"abs_error_quantiles": {"0.5": .., "0.9": .., "0.99": .., "0.999": ..},
                      "std": .., "n": ..},    # validation residuals in normalised units
      "graph_sha256": "...",                  # sha256 of the serialized graph (see graph_digest)
      "versions": {"tensorflow": .., "tf2onnx": .., "onnx": ..},
      "created_at": "2026-11-24T05:00:00Z"
    }
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamer.protowire import WireError, wire_fields
from streamer.windows import MODES

SCHEMA = "lstmad.manifest/v1"
METADATA_KEY = "lstmad.manifest"
INPUT_NAME = "window"
OUTPUT_NAME = "prediction"
REQUIRED_QUANTILES = ("0.5", "0.9", "0.99")


class ManifestError(ValueError):
    """A model file without a usable manifest. The message names the file and the key."""


@dataclass(frozen=True)
class Calibration:
    abs_error_quantiles: dict[str, float]
    std: float
    n: int


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    mode: str
    window: int
    features: tuple[str, ...]
    target: str
    normalisation: str
    calibration: Calibration
    graph_sha256: str
    data_fingerprint: str
    created_at: str
    diff_scale: tuple[float, ...] | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    beats_naive: bool | None = None
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def target_index(self) -> int:
        return self.features.index(self.target)

    @property
    def target_diff_scale(self) -> float:
        return self.diff_scale[self.target_index] if self.diff_scale else 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "name": self.name,
            "version": self.version,
            "mode": self.mode,
            "window": self.window,
            "features": list(self.features),
            "target": self.target,
            "normalisation": self.normalisation,
            "diff_scale": list(self.diff_scale) if self.diff_scale else None,
            "data_fingerprint": self.data_fingerprint,
            "metrics": self.metrics,
            "beats_naive": self.beats_naive,
            "calibration": {
                "abs_error_quantiles": self.calibration.abs_error_quantiles,
                "std": self.calibration.std,
                "n": self.calibration.n,
            },
            "graph_sha256": self.graph_sha256,
            "versions": self.versions,
            "created_at": self.created_at,
        }


def _need(d: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in d:
        raise ManifestError(f"{where}: manifest key {key!r} is missing")
    value = d[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ManifestError(f"{where}: manifest key {key!r} has type {type(value).__name__}")
    return value


def parse(d: dict[str, Any], where: str = "manifest") -> Manifest:
    """Validate a manifest dict; raise :class:`ManifestError` naming the first bad key."""
    if d.get("schema") != SCHEMA:
        raise ManifestError(f"{where}: manifest schema is {d.get('schema')!r}, expected {SCHEMA!r}")
    mode = _need(d, "mode", str, where)
    if mode not in ("window", "stateful"):
        raise ManifestError(
            f"{where}: manifest key 'mode' is {mode!r}, expected window or stateful"
        )
    window = _need(d, "window", int, where)
    if window < 2:
        raise ManifestError(f"{where}: manifest key 'window' must be >= 2, got {window}")
    features = _need(d, "features", list, where)
    if (
        not features
        or not all(isinstance(f, str) and f for f in features)
        or len(set(features)) != len(features)
    ):
        raise ManifestError(f"{where}: manifest key 'features' must be distinct non-empty names")
    target = _need(d, "target", str, where)
    if target not in features:
        raise ManifestError(f"{where}: manifest target {target!r} is not among features {features}")
    norm = _need(d, "normalisation", str, where)
    if norm not in MODES:
        raise ManifestError(
            f"{where}: manifest key 'normalisation' is {norm!r}, expected one of {MODES}"
        )
    diff_scale = d.get("diff_scale")
    if norm == "diff" and (
        not isinstance(diff_scale, list)
        or len(diff_scale) != len(features)
        or not all(isinstance(s, int | float) and math.isfinite(s) and s > 0 for s in diff_scale)
    ):
        raise ManifestError(
            f"{where}: manifest key 'diff_scale' must list one positive scale per feature"
        )
    cal = _need(d, "calibration", dict, where)
    q = _need(cal, "abs_error_quantiles", dict, f"{where}: calibration")
    for k in REQUIRED_QUANTILES:
        v = q.get(k)
        if not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
            raise ManifestError(
                f"{where}: calibration.abs_error_quantiles[{k!r}] must be a finite number >= 0"
            )
    std = _need(cal, "std", (int, float), f"{where}: calibration")
    n = _need(cal, "n", int, f"{where}: calibration")
    return Manifest(
        name=_need(d, "name", str, where),
        version=str(_need(d, "version", (str, int), where)),
        mode=mode,
        window=window,
        features=tuple(features),
        target=target,
        normalisation=norm,
        diff_scale=tuple(float(s) for s in diff_scale) if norm == "diff" and diff_scale else None,
        calibration=Calibration({k: float(v) for k, v in q.items()}, float(std), n),
        graph_sha256=_need(d, "graph_sha256", str, where),
        data_fingerprint=_need(d, "data_fingerprint", str, where),
        created_at=_need(d, "created_at", str, where),
        metrics=d.get("metrics") or {},
        beats_naive=d.get("beats_naive"),
        versions=d.get("versions") or {},
    )


def graph_digest(model: Any) -> str:
    """sha256 of the ONNX graph alone (metadata excluded), so the manifest can vouch for it."""
    return hashlib.sha256(model.graph.SerializeToString(deterministic=True)).hexdigest()


def embed(model: Any, manifest: Manifest) -> None:
    """Write ``manifest`` into an ``onnx.ModelProto``'s metadata_props (replacing any old one)."""
    if manifest.graph_sha256 != graph_digest(model):
        raise ManifestError("manifest graph_sha256 does not match the graph it is embedded in")
    keep = [p for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    entry = model.metadata_props.add()
    entry.key = METADATA_KEY
    entry.value = json.dumps(manifest.to_dict(), sort_keys=True)


def read(path: str | Path) -> tuple[Manifest, bytes]:
    """Load a model file, validate its manifest and checksum; return (manifest, file bytes).

    The manifest and the graph's bytes are read off the protobuf wire (:mod:`streamer.protowire`),
    without importing the ``onnx`` package (several MiB resident in the daemon). Whenever
    that fast path cannot vouch for the file (not plainly laid out, no or bad manifest,
    checksum differs) the file is judged by ``onnx`` exactly as before, with its errors.
    ONNX Runtime parses the whole file next (:func:`streamer.model.load`).
    """
    p = Path(path)
    if p.suffix != ".onnx":
        raise ManifestError(
            f"{p}: only .onnx model files are loaded (got {p.suffix or 'no suffix'})"
        )
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ManifestError(f"{p}: cannot read model file: {exc.strerror}") from exc
    fast = _read_fast(p, data)
    return (fast if fast is not None else _read_onnx(p, data)), data


# ModelProto fields (onnx.proto): 7 graph, 14 metadata_props (StringStringEntryProto: 1 key,
# 2 value). Wire types: 0 varint, 1 fixed 8 bytes, 2 length-delimited, 5 fixed 4 bytes.
GRAPH_FIELD, METADATA_FIELD, ENTRY_KEY, ENTRY_VALUE = 7, 14, 1, 2


def wire_graph_and_props(data: bytes) -> tuple[str, dict[str, str]]:
    """(sha256 of the ModelProto's graph bytes, its metadata_props) from the wire: the digest
    equals :func:`graph_digest` of the parsed model when the graph is one field as
    ``SerializeToString`` writes it. Raises :class:`WireError` otherwise."""
    fields = wire_fields(data)
    graphs = [(a, b) for num, a, b in fields if num == GRAPH_FIELD]
    if len(graphs) != 1:
        raise WireError(f"{len(graphs)} graph fields, expected 1")  # protobuf would merge them
    props: dict[str, str] = {}
    for num, a, b in fields:
        if num != METADATA_FIELD:
            continue
        entry = {ENTRY_KEY: "", ENTRY_VALUE: ""}
        for n2, c, d in wire_fields(data, a, b):
            if n2 in entry:
                try:
                    entry[n2] = data[c:d].decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise WireError(f"metadata_props: field {n2} is not UTF-8") from exc
        props[entry[ENTRY_KEY]] = entry[ENTRY_VALUE]
    (a, b), view = graphs[0], memoryview(data)
    return hashlib.sha256(view[a:b]).hexdigest(), props


def _read_fast(p: Path, data: bytes) -> Manifest | None:
    """The manifest if the wire reading vouches for the file, else None (see :func:`read`)."""
    try:
        digest, props = wire_graph_and_props(data)
        raw = json.loads(props[METADATA_KEY])
        manifest = parse(raw, where=str(p)) if isinstance(raw, dict) else None
    except (WireError, KeyError, ValueError, RecursionError):  # ManifestError, JSONDecodeError
        return None
    return manifest if manifest is not None and manifest.graph_sha256 == digest else None


def _read_onnx(p: Path, data: bytes) -> Manifest:
    """The manifest as the ``onnx`` package parses the file; every refusal names the file."""
    import onnx

    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:
        raise ManifestError(f"{p}: not a valid ONNX file ({exc.__class__.__name__})") from exc
    props = {e.key: e.value for e in model.metadata_props}
    if METADATA_KEY not in props:
        raise ManifestError(
            f"{p}: no '{METADATA_KEY}' in metadata_props; export it with `lstmad train`"
        )
    try:
        raw = json.loads(props[METADATA_KEY])
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{p}: manifest is not JSON ({exc.msg})") from exc
    if not isinstance(raw, dict):
        raise ManifestError(f"{p}: manifest is not a JSON object")
    manifest = parse(raw, where=str(p))
    if graph_digest(model) != manifest.graph_sha256:
        raise ManifestError(f"{p}: graph checksum mismatch: the file was changed after export")
    return manifest
