"""Several models, one daemon: streams routed to models by glob patterns, and hot reload.

Each route owns one model file and one :class:`streamer.pipeline.Pipeline`. A stream goes to
the first route whose ``streams`` globs match its id (``fnmatchcase``), else to the default
route (``[model] path``). With routes, the choice is cached per stream id (the cache is
bounded: it is cleared when it outgrows :data:`CACHE_LIMIT`); with the default route alone
there is nothing to choose and nothing is cached.

Hot reload: every ``reload_poll_s`` the router stats each model file; when (mtime, size)
changed and the content's sha256 differs from the serving model, it loads the new file
with :func:`streamer.model.load` and swaps it in with ``Pipeline.set_model``, which keeps
every stream's window and detector state. SIGHUP forces the check. A file that fails
validation (``ManifestError``) or does not fit the pipeline (window or features changed:
``ValueError``) is refused: the old model keeps serving, the refusal is logged and counted
as ``lstmad_model_reloads_total{result="refused"}``; the router retries only once the file
changes again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from streamer import alerts
from streamer import model as model_mod
from streamer.config import ModelConfig
from streamer.inference import InferenceProcess
from streamer.manifest import ManifestError
from streamer.metrics import Metrics
from streamer.pipeline import DetectConfig, Pipeline

log = logging.getLogger("lstmad.routing")
CACHE_LIMIT = 1_000_000
Loader = Callable[[Path], model_mod.OnnxModel]


class TimedModel:
    """A Predictor that records each batched ``session.run`` in ``lstmad_inference_seconds``."""

    def __init__(self, inner: model_mod.OnnxModel, metrics: Metrics):
        self.inner = inner
        self._hist = metrics.inference_seconds
        self.window = inner.window
        self.features = inner.features
        self.manifest = inner.manifest

    def predict(self, windows: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
        t0 = time.perf_counter()
        out = self.inner.predict(windows)
        if len(windows):
            self._hist.observe(time.perf_counter() - t0)
        return out

    def error_scale(self, windows: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
        return self.inner.error_scale(windows)


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


@dataclass
class Route:
    name: str
    globs: tuple[str, ...]
    path: Path
    model: model_mod.OnnxModel
    pipeline: Pipeline
    stamp: tuple[int, int] | None

    @property
    def ref(self) -> alerts.ModelRef:
        return alerts.ModelRef(self.model.name, self.model.version, self.model.sha256, self.name)


class Router:
    def __init__(
        self,
        cfg: ModelConfig,
        detect: DetectConfig,
        metrics: Metrics,
        loader: Loader | None = None,
        inference_process: bool = False,
        fork: bool = False,
    ):
        """``inference_process``: serve the forecasts from a child process
        (:mod:`streamer.inference`; ``serve`` with ``[model] inference = "process"``), else
        on the caller's threads; ``fork``: fork that child from this process if it can (see
        :class:`streamer.inference.InferenceProcess`). Call :meth:`close` when done with it."""
        self.cfg = cfg
        self.metrics = metrics
        self.remote: InferenceProcess | None = None
        if loader is None and inference_process:
            self.remote = InferenceProcess(cfg.intra_op_threads, cfg.inter_op_threads, fork=fork)
        self._load: Loader = loader or (
            lambda p: model_mod.load(p, cfg.intra_op_threads, cfg.inter_op_threads, self.remote)
        )
        specs = [(r.name, r.streams, r.path) for r in cfg.routes]
        specs.append(("default", ("*",), cfg.path))
        self.routes: list[Route] = []
        try:
            self._load_routes(specs, detect)
        except BaseException:
            self.close()
            raise
        self._cache: dict[str, int] = {}
        self._next_check = 0.0
        self._reload_requested = False
        self._publish_info()

    def _load_routes(self, specs: list[tuple[str, Any, Path]], detect: DetectConfig) -> None:
        metrics = self.metrics
        for name, globs, path in specs:
            stamp = _stamp(path)
            try:
                m = self._load(path)
            except ManifestError as exc:
                raise ManifestError(f"route {name!r}: {exc}") from exc
            pipe = Pipeline(TimedModel(m, metrics), detect)
            self.routes.append(Route(name, tuple(globs), path, m, pipe, stamp))
            metrics.model_reloads.labels("ok").inc()
            log.info("model loaded", extra={"fields": self._describe(self.routes[-1])})

    def close(self) -> None:
        """Stop the inference process, if any (after the last batch has landed)."""
        if self.remote is not None:
            self.remote.close()

    def _forget(self, sha256: str) -> None:
        """Close the inference process's session of a model no route serves any more."""
        if self.remote is not None and all(x.model.sha256 != sha256 for x in self.routes):
            self.remote.forget(sha256)

    @staticmethod
    def _describe(r: Route) -> dict[str, Any]:
        return {
            "route": r.name,
            "path": str(r.path),
            "model": r.model.name,
            "version": r.model.version,
            "sha256": r.model.sha256,
            "window": r.model.window,
            "features": list(r.model.features),
        }

    def _publish_info(self) -> None:
        info: dict[str, str] = {}
        for r in self.routes:
            info |= {
                f"{r.name}_name": r.model.name,
                f"{r.name}_version": r.model.version,
                f"{r.name}_sha256": r.model.sha256,
                f"{r.name}_path": str(r.path),
            }
        self.metrics.model_info.info(info)

    def route_of(self, stream: str) -> int:
        """Index in :attr:`routes` of the route ``stream`` goes to. With the default route
        alone the answer is 0 for every stream: nothing is cached (a per-stream cost)."""
        if len(self.routes) == 1:
            return 0
        i = self._cache.get(stream)
        if i is None:
            i = len(self.routes) - 1
            for j, r in enumerate(self.routes[:-1]):
                if any(fnmatchcase(stream, g) for g in r.globs):
                    i = j
                    break
            if len(self._cache) >= CACHE_LIMIT:
                self._cache.clear()
            self._cache[stream] = i
        return i

    def features_of(self, stream: str) -> tuple[str, ...]:
        return self.routes[self.route_of(stream)].model.features

    def stream_count(self) -> int:
        return sum(int(r.pipeline.stream_count()) for r in self.routes)

    def request_reload(self) -> None:
        """Ask for a reload check at the next loop iteration (safe from a signal handler)."""
        self._reload_requested = True

    def maybe_reload(self, now: float) -> list[tuple[str, str]]:
        """Check model files if due (``now``: monotonic s); return (route, "ok"|"refused")."""
        forced, self._reload_requested = self._reload_requested, False
        if not forced and (self.cfg.reload_poll_s <= 0 or now < self._next_check):
            return []
        self._next_check = now + self.cfg.reload_poll_s
        results = []
        for r in self.routes:
            stamp = _stamp(r.path)
            if not forced and stamp == r.stamp:
                continue
            r.stamp = stamp
            sha = _sha256(r.path)
            if sha == r.model.sha256:
                continue
            results.append((r.name, self._swap(r)))
        if results:
            self._publish_info()
        return results

    def _swap(self, r: Route) -> str:
        new: model_mod.OnnxModel | None = None
        try:
            new = self._load(r.path)
            r.pipeline.set_model(TimedModel(new, self.metrics))
        except (ManifestError, ValueError) as exc:
            if new is not None:  # loaded, then refused by the pipeline (window, features)
                self._forget(new.sha256)
            self.metrics.model_reloads.labels("refused").inc()
            log.error(
                "model reload refused; the previous model keeps serving",
                extra={"fields": {"route": r.name, "path": str(r.path), "error": str(exc)}},
            )
            return "refused"
        old = r.model
        r.model = new
        self._forget(old.sha256)
        self.metrics.model_reloads.labels("ok").inc()
        log.info(
            "model reloaded",
            extra={"fields": {**self._describe(r), "previous_sha256": old.sha256}},
        )
        return "ok"
