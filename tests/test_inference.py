"""The inference process (streamer.inference): same predictions as in-process ONNX Runtime,
clear errors when it refuses a model or dies, and a lifetime bound to the daemon's."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from streamer import model as model_mod
from streamer.config import ModelConfig, RouteConfig
from streamer.decode import Limits
from streamer.inference import InferenceError, InferenceProcess, ModelRefused
from streamer.manifest import ManifestError, read
from streamer.metrics import Metrics
from streamer.pipeline import DetectConfig
from streamer.routing import Router
from streamer.scoring import Scorer
from tests import daemon_support as ds
from tests.test_manifest import write_model
from tests.test_scoring import messages

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def remote() -> Iterator[InferenceProcess]:
    r = InferenceProcess()
    try:
        yield r
    finally:
        r.close()


def windows(n: int, w: int = 50, f: int = 1, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (50 + np.cumsum(rng.normal(0, 1, (n, w, f)), axis=1)).astype(np.float32)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped) is gone for our purposes
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


def test_predictions_equal_in_process_onnx_runtime(remote: InferenceProcess) -> None:
    here = model_mod.load(ds.MODEL)
    there = model_mod.load(ds.MODEL, remote=remote)
    assert there.session is None and there.sha256 == here.sha256
    for n in (0, 1, 63, 64, 65, 3000):
        x = windows(n, seed=n)
        np.testing.assert_array_equal(there.predict(x), here.predict(x))


def test_both_ends_release_onnx_runtimes_start_up_pages(
    remote: InferenceProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """streamer.model.settle runs wherever a model is opened: the child reports the
    library's mappings it advised (the wheel's .so is 35 MiB); in this process a spy sees
    the call. What it saves is measured by the throughput benchmark."""
    there = model_mod.load(ds.MODEL, remote=remote)
    assert remote.released_bytes[there.sha256] >= 16 << 20
    calls: list[str] = []
    real = model_mod.malloc.release_file_pages
    monkeypatch.setattr(
        model_mod.malloc, "release_file_pages", lambda part: calls.append(part) or real(part)
    )
    here = model_mod.load(ds.MODEL)
    assert calls == [model_mod.ORT_LIBRARY]
    x = windows(100, seed=5)
    np.testing.assert_array_equal(there.predict(x), here.predict(x))


def test_a_model_that_cannot_run_a_full_chunk_is_refused_at_load(
    remote: InferenceProcess, tmp_path: Path
) -> None:
    """A graph with a fixed batch of 2 passes the probe batch but not settle's full chunk:
    refused when loaded, in the child and here, not at the first batch of 64."""
    import onnx

    from streamer import manifest as mf
    from tests.test_manifest import good_dict, persistence_model

    graph = persistence_model()
    graph.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 2
    mf.embed(graph, mf.parse(good_dict(graph_sha256=mf.graph_digest(graph))))
    path = tmp_path / "batch2.onnx"
    onnx.save(graph, path)
    for where in (remote, None):
        with pytest.raises(ManifestError, match="cannot run 64 windows at once"):
            model_mod.load(path, remote=where)


@pytest.mark.parametrize("fork", [False, True])
def test_the_daemon_process_never_imports_onnx_runtime(tmp_path: Path, fork: bool) -> None:
    """Forked (as serve starts it) or a new interpreter, the child gives the same
    predictions, and ONNX Runtime is loaded in the child only."""
    script = f"""
        import sys
        from streamer import model
        from streamer.inference import InferenceProcess
        import numpy as np
        r = InferenceProcess(fork={fork})
        m = model.load({str(ds.MODEL)!r}, remote=r)
        x = 50 + np.cumsum(np.random.default_rng(3).normal(0, 1, (200, m.window, 1)), axis=1)
        got = m.predict(x.astype(np.float32))
        print(r.forked, "onnxruntime" in sys.modules)
        r.close()
        want = model.load({str(ds.MODEL)!r}).predict(x.astype(np.float32))  # here, now
        np.testing.assert_array_equal(got, want)
    """
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], cwd=REPO, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(fork), "False"]


def test_the_child_is_forked_only_from_a_single_thread_without_onnx_runtime() -> None:
    """A fork copies one thread: with another running, or with ONNX Runtime's threads'
    state in this process, the child is a new interpreter, and the log says why."""
    script = """
        import logging, sys, threading
        import numpy as np
        from streamer.inference import InferenceProcess, fork_refusal
        logging.basicConfig(level=logging.INFO, format="%(message)s %(fields)s", stream=sys.stdout)
        def forked():
            r = InferenceProcess(fork=True)
            try:
                return r.forked
            finally:
                r.close()
        print(fork_refusal(), forked())
        stop = threading.Event()
        t = threading.Thread(target=stop.wait)
        t.start()
        print(fork_refusal(), forked())
        stop.set()
        t.join()
        import onnxruntime
        print(fork_refusal(), forked())
    """
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], cwd=REPO, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    lines = [x for x in out.stdout.splitlines() if not x.startswith("inference process started")]
    assert lines == [
        "None True",
        "2 threads are running False",
        "ONNX Runtime is loaded in this process False",
    ]
    assert "'not_forked_because': '2 threads are running'" in out.stdout


def test_several_models_in_one_request_and_in_turns(tmp_path: Path) -> None:
    """Two keys in one submit land in their own order; a batch larger than the shared
    memory runs in turns with the same result."""
    small = write_model(tmp_path / "w4.onnx")  # persistence: predicts the last value
    r = InferenceProcess(input_bytes=50 * 4 * 7, max_windows=16)  # 7 windows of 50 per turn
    try:
        big = model_mod.load(ds.MODEL, remote=r)
        w4 = model_mod.load(small, remote=r)
        xb, xs = windows(40), windows(30, w=4)
        got = r.submit([(big.sha256, xb), (w4.sha256, xs)]).result()
        np.testing.assert_array_equal(got[0], model_mod.load(ds.MODEL).predict(xb))
        np.testing.assert_array_equal(got[1], xs[:, -1, 0])
        assert len(r.submit([(w4.sha256, windows(3, w=4))]).compute_s) == 0  # not waited yet
    finally:
        r.close()


def test_a_refused_model_names_the_file_and_the_reason(
    remote: InferenceProcess, tmp_path: Path
) -> None:
    _, data = read(ds.MODEL)
    with pytest.raises(
        ModelRefused, match=r"input shape .* does not match the manifest's window 49"
    ):
        remote.load("k", data, 49, 1)
    with pytest.raises(ModelRefused, match="ONNX Runtime cannot open the graph"):
        remote.load("junk", b"not a graph", 50, 1)
    with pytest.raises(InferenceError, match="KeyError"):
        remote.predict("k", windows(2))  # refused models are not kept
    bad = tmp_path / "cut.onnx"
    bad.write_bytes(ds.MODEL.read_bytes()[:-100])
    with pytest.raises(ManifestError, match=r"cut\.onnx"):
        model_mod.load(bad, remote=remote)
    assert model_mod.load(ds.MODEL, remote=remote).predict(windows(2)).shape == (2,)  # still serves


def test_forgotten_model_is_refused(remote: InferenceProcess) -> None:
    m = model_mod.load(ds.MODEL, remote=remote)
    remote.forget(m.sha256)
    with pytest.raises(InferenceError, match="KeyError"):
        m.predict(windows(2))


def test_a_dead_child_raises_with_its_status(remote: InferenceProcess) -> None:
    m = model_mod.load(ds.MODEL, remote=remote)
    pending = remote.submit([(m.sha256, windows(500))])
    os.kill(remote.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while alive(remote.pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    # the batch in flight either landed before the kill or fails; nothing after it works
    with contextlib.suppress(InferenceError):
        pending.result()
    with pytest.raises(InferenceError, match=r"exited \(status -9\)"):
        m.predict(windows(2))


@pytest.mark.parametrize("fork", [False, True])
def test_the_child_ignores_sigterm_and_exits_with_its_parent(tmp_path: Path, fork: bool) -> None:
    """A supervisor's SIGTERM to the whole group must not kill inference under the last
    batch; the daemon's exit, however abrupt, ends the child (a forked child must not keep
    the daemon's end of the socket open)."""
    script = f"""
        import os, signal, sys, time
        from streamer import model
        from streamer.inference import InferenceProcess
        import numpy as np
        r = InferenceProcess(fork={fork})
        assert r.forked == {fork}
        m = model.load({str(ds.MODEL)!r}, remote=r)
        os.kill(r.pid, signal.SIGTERM)
        time.sleep(0.2)
        assert m.predict(np.ones((3, m.window, 1), np.float32)).shape == (3,)
        print(r.pid, flush=True)
        os._exit(0)  # no close(): the socket closes with the process
    """
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], cwd=REPO, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    child = int(out.stdout.strip())
    deadline = time.monotonic() + 10
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not alive(child)


def test_the_shared_memory_file_is_unlinked_once_mapped() -> None:
    shm = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    before = set(shm.glob("lstmad-infer-*")) if shm else set()
    r = InferenceProcess()
    try:
        if shm:
            assert set(shm.glob("lstmad-infer-*")) == before
        maps = Path(f"/proc/{r.pid}/maps").read_text()
        assert "lstmad-infer-" in maps and "(deleted)" in maps
    finally:
        r.close()
    assert not alive(r.pid)


def test_scoring_through_the_process_equals_scoring_here(tmp_path: Path) -> None:
    """Same batches, two routes: every alert, prediction and dead letter is identical."""
    small = write_model(tmp_path / "w4.onnx")
    cfg = ModelConfig(path=ds.MODEL, routes=(RouteConfig("db", ("db*",), small),))
    streams = ds.make_streams(("normal", "spike", "level_shift"), "web") + ds.make_streams(
        ("normal",), "db"
    )
    outs, now = [], time.time()
    for process in (False, True):
        registry = CollectorRegistry()
        metrics = Metrics.create(registry)
        router = Router(cfg, DetectConfig(), metrics, inference_process=process)
        try:
            assert (router.remote is not None) == process
            scorer = Scorer(router, Limits(max_age_ms=0), metrics, predictions=True)
            got = []
            for lo in range(0, 360, 90):
                o = scorer.score(messages(streams, lo, lo + 90), now)
                got.append((o.alerts, o.predictions, o.dead, o.points))
            n = registry.get_sample_value("lstmad_inference_seconds_count")
            outs.append((got, n))
        finally:
            router.close()
    assert outs[0] == outs[1]
    assert sum(len(a) for a, _, _, _ in outs[0][0]) > 0  # the spike and the shift alert
    assert sum(len(p) for _, p, _, _ in outs[0][0]) > 0 and outs[0][1] > 0


def test_a_child_that_cannot_start_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    before = set(Path("/dev/shm").glob("lstmad-infer-*")) if Path("/dev/shm").is_dir() else set()
    monkeypatch.setattr(sys, "executable", "/nonexistent/python3")
    with pytest.raises(
        InferenceError,
        match=r"cannot start the inference process \(/nonexistent/python3 -m streamer",
    ):
        InferenceProcess()
    after = set(Path("/dev/shm").glob("lstmad-infer-*")) if Path("/dev/shm").is_dir() else set()
    assert after == before  # the shared file does not outlive the failure


# serve forks the child; these make that impossible in the two ways it can be.
NO_FORK = {
    # A thread is running, so the child is a new interpreter, and there is no interpreter.
    "no interpreter": """
        import sys, threading, time
        threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
        sys.executable = "/nonexistent/python3"
    """,
    # The kernel refuses the fork (EAGAIN: the process limit, or memory).
    "fork refused": """
        import errno, os
        def refuse():
            raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))
        os.fork = refuse
    """,
}


@pytest.mark.parametrize("how", sorted(NO_FORK))
def test_serve_says_when_the_inference_process_cannot_start(tmp_path: Path, how: str) -> None:
    config = tmp_path / "lstmad.toml"
    config.write_text('[model]\ninference = "process"\n[metrics]\nport = 0\n')
    script = textwrap.dedent(NO_FORK[how]) + textwrap.dedent(f"""
        import sys
        from streamer.cli import main
        sys.exit(main(["serve", "--config", {str(config)!r}]))
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LSTMAD_")}
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 1, out.stderr
    assert "inference process did not start" in out.stdout + out.stderr
    how_it_started = "(/nonexistent/python3 -m streamer" if how == "no interpreter" else "(fork)"
    assert how_it_started in out.stdout + out.stderr
