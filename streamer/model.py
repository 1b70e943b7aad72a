"""Loading a model file into ONNX Runtime: the daemon's only view of a model.

:func:`load` validates the manifest and graph checksum (``streamer.manifest.read``), opens a
CPU session with the configured thread counts, checks the I/O names and shapes against the
manifest, and runs one probe batch so that a file that loads but cannot run is refused at
load time, not in the hot path.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from streamer import malloc
from streamer import manifest as mf
from streamer.inference import InferenceProcess, ModelRefused
from streamer.windows import Mode, error_scale

MAX_BATCH = 64  # windows per session.run; see OnnxModel.predict


@dataclass(frozen=True)
class OnnxModel:
    """A loaded, validated model. ``predict`` maps raw windows [B, W, F] to raw next values [B]."""

    path: Path
    manifest: mf.Manifest
    sha256: str
    session: Any
    # With a remote, windows are forecast in the inference process (streamer.inference)
    # under this model's sha256, and ``session`` is None.
    remote: InferenceProcess | None = None

    @property
    def window(self) -> int:
        return self.manifest.window

    @property
    def features(self) -> tuple[str, ...]:
        return self.manifest.features

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version

    def predict(self, windows: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
        """One prediction per window, in chunks of at most :data:`MAX_BATCH` windows.

        Chunking bounds ONNX Runtime's arena, which grows to the largest batch it has seen and
        keeps it: 5,000 windows of the default model peaked at 367 MiB RSS in one call and at
        94 MiB in chunks of 512. Chunks of 64 are also the fastest for the default model's
        LSTM on one thread: 77k windows/s, against 68k at 128 and 56k at 256 or 512
        (``python -m bench inference`` prints the batch sizes side by side).
        """
        if self.remote is not None:
            return self.remote.predict(self.sha256, windows)
        n = len(windows)
        out = np.empty(n, dtype=np.float32)
        for start in range(0, n, MAX_BATCH):
            x = np.ascontiguousarray(windows[start : start + MAX_BATCH], dtype=np.float32)
            (y,) = self.session.run([mf.OUTPUT_NAME], {mf.INPUT_NAME: x})
            out[start : start + len(x)] = np.asarray(y, dtype=np.float32).reshape(len(x))
        return out

    def error_scale(self, windows: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
        """Per-window scale that turns raw errors into the manifest's normalised units."""
        m = self.manifest
        mode: Mode = m.normalisation  # type: ignore[assignment]  # validated by manifest.parse
        return error_scale(windows, m.target_index, mode, m.target_diff_scale).astype(np.float64)


def open_session(data: bytes, intra_op_threads: int, inter_op_threads: int) -> Any:
    """A CPU ONNX Runtime session of graph ``data``; ValueError if ONNX Runtime refuses it."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = intra_op_threads
    opts.inter_op_num_threads = inter_op_threads
    opts.log_severity_level = 3
    # Idle pool threads sleep instead of spinning: the loop's other work (and the broker on a
    # small machine) needs the cores between two inference calls.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ValueError(f"ONNX Runtime cannot open the graph: {exc}") from exc


def check_session(session: Any, window: int, n_features: int) -> None:
    """ValueError unless ``session`` maps [B, window, n_features] windows to one finite
    prediction each (the I/O names, the input shape, and a probe batch of two)."""
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name for o in session.get_outputs()}
    if set(inputs) != {mf.INPUT_NAME} or mf.OUTPUT_NAME not in outputs:
        raise ValueError(
            f"graph I/O is {sorted(inputs)} -> {sorted(outputs)}; "
            f"expected ['{mf.INPUT_NAME}'] -> ['{mf.OUTPUT_NAME}']"
        )
    shape = inputs[mf.INPUT_NAME].shape
    if len(shape) != 3 or shape[1:] != [window, n_features]:
        raise ValueError(
            f"input shape {shape} does not match the manifest's window "
            f"{window} x {n_features} features"
        )
    (y,) = session.run(
        [mf.OUTPUT_NAME], {mf.INPUT_NAME: np.ones((2, window, n_features), np.float32)}
    )
    probe = np.asarray(y)
    if probe.size != 2 or not np.all(np.isfinite(probe)):
        raise ValueError("the graph does not give one finite prediction per window")


# Where the wheel keeps ONNX Runtime's native libraries (onnxruntime_pybind11_state*.so,
# 35 MiB, and its providers' shim).
ORT_LIBRARY = "/onnxruntime/capi/"


def settle(session: Any, window: int, n_features: int) -> int:
    """Ready a checked session for serving: run it once on a full chunk (its first run at a
    shape plans and allocates), hand back the pages of ONNX Runtime's library that start-up
    touched (:func:`streamer.malloc.release_file_pages`), then run it once more, so the pages
    serving uses are back before the first batch. Start-up leaves 19-27 MiB of the library
    resident; serving the default model needs about 7 MiB of it. Returns the bytes of the
    library's mappings the kernel took the advice for (0: nothing released). ValueError if
    the session cannot run a full chunk: refused at load time, not in the hot path."""
    x = np.ones((MAX_BATCH, window, n_features), np.float32)
    try:
        session.run([mf.OUTPUT_NAME], {mf.INPUT_NAME: x})
        released = malloc.release_file_pages(ORT_LIBRARY)
        session.run([mf.OUTPUT_NAME], {mf.INPUT_NAME: x})
    except Exception as exc:  # ONNX Runtime's own exception types
        raise ValueError(f"ONNX Runtime cannot run {MAX_BATCH} windows at once: {exc}") from exc
    return released


def serving_session(
    data: bytes, window: int, n_features: int, intra_op_threads: int, inter_op_threads: int
) -> tuple[Any, int]:
    """:func:`open_session`, :func:`check_session` and :func:`settle`: a session of graph
    ``data`` ready to serve windows [B, window, n_features], and the bytes of ONNX Runtime's
    library released. ValueError with the reason if the graph is refused. The one way a
    model is opened, in the inference process and here."""
    session = open_session(data, intra_op_threads, inter_op_threads)
    check_session(session, window, n_features)
    return session, settle(session, window, n_features)


def load(
    path: str | Path,
    intra_op_threads: int = 1,
    inter_op_threads: int = 1,
    remote: InferenceProcess | None = None,
) -> OnnxModel:
    """Load and validate ``path``; raise :class:`~streamer.manifest.ManifestError` if unusable.

    With ``remote`` the graph is opened and checked in the inference process only, so this
    process never imports ONNX Runtime (about 35 MiB resident with the default model)."""
    p = Path(path)
    manifest, data = mf.read(p)
    if manifest.mode != "window":
        raise mf.ManifestError(
            f"{p}: manifest mode is {manifest.mode!r}; the daemon serves 'window' models "
            "(stateful single-step exports are for benchmarks)"
        )
    sha, n_features = hashlib.sha256(data).hexdigest(), len(manifest.features)
    try:
        if remote is not None:
            remote.load(sha, data, manifest.window, n_features)
            return OnnxModel(p, manifest, sha, None, remote)
        session, _ = serving_session(
            data, manifest.window, n_features, intra_op_threads, inter_op_threads
        )
    except (ValueError, ModelRefused) as exc:
        raise mf.ManifestError(f"{p}: {exc}") from exc
    return OnnxModel(p, manifest, sha, session)
