"""ONNX Runtime in a child process: forecasts that do not wait for the interpreter lock.

Why a process and not the worker thread: ``session.run`` releases the GIL, but between two
calls (one per chunk of :data:`streamer.model.MAX_BATCH` windows) the worker must take it
back from the loop thread, which holds it while kafka-python parses records in pure Python.
Beside a busy loop thread 2,700 windows took 2.5-7x as long as alone
(``python -m bench.gil_handoff``). In a process of its own the chunk loop has its own lock,
so inference runs on the second core while the loop polls and decodes the next batch, and
the loop thread reads the answer itself (no worker thread, so no lock changes hands).

The protocol is small: one run in flight at a time, answers read in request order, by one
thread (the daemon's loop):

- windows go through a shared-memory file (``/dev/shm``, unlinked once both ends mapped it)
  and predictions come back the same way, so a batch costs two copies and one socket round
  trip, not a pickle of the arrays;
- a model is sent once as its ONNX bytes (``load``) and named by its SHA-256 afterwards, so
  a file replaced on disk can never make the child serve other weights than the parent
  validated;
- the child ignores SIGTERM and SIGINT (a supervisor signals the whole group; the daemon
  must still land its last batch) and exits when its socket closes, i.e. when the daemon
  exits however it exits.

A child that dies (the kernel's OOM killer, a crash in ONNX Runtime) makes every later
request raise :class:`InferenceError`; the loop re-raises it, nothing is committed past the
last landed batch, and the supervisor's restart replays from there.

How the child starts. ``lstmad serve`` forks it while building the service (``fork=True``):
the process is then single-threaded and has not loaded ONNX Runtime, so the child may run
on a copy of it, and shares its pages (the interpreter, numpy and this package) instead of
loading its own. Before the fork both sides' garbage collector is kept off those pages
(``gc.freeze``): a collection writes to every object it visits, and each written page would
be copied. At 100,000 streams that saved 4.7-8.8 MiB of the service's resident set, 49-92
bytes a stream (README, "Benchmarks"): a page either process writes later is copied too,
so how much stays shared varies from run to run. Otherwise (``fork=False``, or a
second thread, or ONNX Runtime already loaded: its thread pools do not survive a fork) the
child is a new interpreter, ``python -m streamer.inference``.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import mmap
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

# The shared file is reserved whole at start-up (a full tmpfs must refuse then, not with
# SIGBUS later), so it is sized for the default batch rather than for any batch: 2 MiB is
# 10,485 windows of 50 x 1 float32, twice [kafka] max_poll_records; a larger request (more
# features, a larger max_poll_records) runs in turns, each waited for.
INPUT_BYTES = 2 << 20
MAX_WINDOWS = 1 << 14  # predictions of one request (float32)
START_TIMEOUT_S = 60.0

log = logging.getLogger("lstmad.inference")


class InferenceError(RuntimeError):
    """The inference process failed a request or is gone."""


class ModelRefused(InferenceError):
    """ONNX Runtime in the inference process cannot open or run a model (the message says why)."""


def _shared_file() -> tuple[int, str]:
    """A new file for the shared mapping: in ``/dev/shm`` (tmpfs, never written back), else,
    where a sandbox hides it or makes it read-only, in the temporary directory."""
    try:
        return tempfile.mkstemp(prefix="lstmad-infer-", dir="/dev/shm")
    except OSError:
        return tempfile.mkstemp(prefix="lstmad-infer-")


def _child_env() -> dict[str, str]:
    """This environment, with the directory this ``streamer`` was imported from first on
    the child's path: the child runs the same code whatever its working directory."""
    here = str(Path(__file__).resolve().parent.parent)
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (here, path) if p)}


def fork_refusal() -> str | None:
    """Why this process may not fork the child (None: it may): a fork copies only the
    calling thread, so another thread's locks would stay held in the child forever, and
    ONNX Runtime's state would be copied without the threads it belongs to."""
    if threading.active_count() > 1:
        return f"{threading.active_count()} threads are running"
    if "onnxruntime" in sys.modules:
        return "ONNX Runtime is loaded in this process"
    return None


class _Forked:
    """A child forked from this process to run ``target``, with the part of
    :class:`subprocess.Popen`'s interface :class:`InferenceProcess` uses."""

    def __init__(self, target: Callable[[], int], keep_fd: int) -> None:
        for f in (sys.stdout, sys.stderr):  # else the child would write their buffers again
            with contextlib.suppress(Exception):
                f.flush()
        gc.collect()
        gc.freeze()  # see the module's docstring: the shared pages stay shared
        self.returncode: int | None = None
        self.pid = os.fork()
        if self.pid == 0:  # the child: never returns
            code = 1
            try:
                # As Popen(close_fds=True, stdin=DEVNULL): only stdout, stderr and our socket
                # stay open; a copy of another descriptor here would keep it from closing.
                os.closerange(3, keep_fd)
                os.closerange(keep_fd + 1, os.sysconf("SC_OPEN_MAX"))
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                os.close(null)
                code = target()
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"inference process {self.pid}", timeout or 0)
            time.sleep(0.01)
        assert self.returncode is not None
        return self.returncode

    def kill(self) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)


def _regions(buf: mmap.mmap, input_bytes: int, max_windows: int) -> tuple[np.ndarray, np.ndarray]:
    """The windows region and the predictions region of the shared mapping (float32)."""
    inp = np.frombuffer(buf, dtype=np.float32, count=input_bytes // 4)
    return inp, np.frombuffer(buf, dtype=np.float32, count=max_windows, offset=input_bytes)


class Pending:
    """The predictions of one :meth:`InferenceProcess.submit`, in request order."""

    def __init__(self, proc: InferenceProcess, ticket: int, sizes: list[int]) -> None:
        self._proc, self._ticket, self._sizes = proc, ticket, sizes
        self._value: list[npt.NDArray[np.float32]] | None = None
        self._error: InferenceError | None = None
        self.compute_s: list[float] = []  # the child's time per request

    def result(self) -> list[npt.NDArray[np.float32]]:
        """Wait for the child (the socket read releases the GIL) and copy the predictions
        out; re-raises the request's :class:`InferenceError` on every call."""
        if self._value is None:
            if self._error is not None:
                raise self._error
            try:
                self.compute_s = self._proc._wait(self._ticket)
            except InferenceError as exc:
                self._error = exc
                raise
            finally:
                if self._proc._pending is self:
                    self._proc._pending = None
            out, start = [], 0
            for k in self._sizes:
                out.append(self._proc._out[start : start + k].copy())
                start += k
            self._value = out
        return self._value


class InferenceProcess:
    """The parent's handle: :meth:`load` a model's bytes once, then :meth:`submit` windows
    by key and collect them with :meth:`Pending.result`; one run at a time (a second
    :meth:`submit` first waits for the one before). Not thread-safe: the daemon's loop
    thread alone calls it."""

    def __init__(
        self,
        intra_op_threads: int = 1,
        inter_op_threads: int = 1,
        input_bytes: int = INPUT_BYTES,
        max_windows: int = MAX_WINDOWS,
        fork: bool = False,
    ) -> None:
        """Start the child and wait until it is ready (raises :class:`InferenceError`).
        ``fork``: fork it from this process if :func:`fork_refusal` allows (see the module's
        docstring), else start a new interpreter; :attr:`forked` says which it was."""
        size = input_bytes + 4 * max_windows
        try:
            fd, path = _shared_file()
        except OSError as exc:
            raise InferenceError(f"no file for the inference process's memory: {exc}") from exc
        try:
            # Allocated now: a full tmpfs refuses here, not with SIGBUS at the first write.
            os.posix_fallocate(fd, 0, size)
            self._map = mmap.mmap(fd, size)
        except OSError as exc:
            os.unlink(path)
            raise InferenceError(f"cannot allocate {size} bytes in {path}: {exc}") from exc
        finally:
            os.close(fd)
        ours, theirs = socket.socketpair()
        argv = [str(theirs.fileno()), path]
        argv += [str(n) for n in (intra_op_threads, inter_op_threads, input_bytes, max_windows)]
        refusal = fork_refusal() if fork else "not asked to"
        self.forked = refusal is None
        self._proc: subprocess.Popen[bytes] | _Forked
        try:
            if self.forked:
                self._proc = _Forked(lambda: main(argv), theirs.fileno())
            else:
                self._proc = subprocess.Popen(
                    [sys.executable, "-m", "streamer.inference", *argv],
                    pass_fds=(theirs.fileno(),),
                    stdin=subprocess.DEVNULL,
                    env=_child_env(),
                )
        except OSError as exc:
            os.unlink(path)
            ours.close()
            how = "fork" if self.forked else f"{sys.executable} -m streamer.inference"
            raise InferenceError(f"cannot start the inference process ({how}): {exc}") from exc
        finally:
            theirs.close()
        self._conn = Connection(ours.detach())
        self._sent = self._received = 0
        self._replies: dict[int, tuple[str, Any]] = {}
        self._pending: Pending | None = None
        self._loaded: set[str] = set()
        # Per loaded key: bytes of ONNX Runtime's library mappings the child released after
        # opening it (streamer.model.settle); 0 where the kernel took no advice.
        self.released_bytes: dict[str, int] = {}
        try:
            ticket = self._send(("ready",))
            if not self._conn.poll(START_TIMEOUT_S):
                raise InferenceError(f"inference process not ready in {START_TIMEOUT_S:.0f} s")
            self._wait(ticket)
        except BaseException:
            self.close()
            raise
        finally:
            os.unlink(path)  # both ends have it mapped (or the child never will)
        self._in, self._out = _regions(self._map, input_bytes, max_windows)
        fields: dict[str, Any] = {"pid": self.pid, "forked": self.forked}
        if fork and refusal is not None:
            fields["not_forked_because"] = refusal
        log.info("inference process started", extra={"fields": fields})

    @property
    def pid(self) -> int:
        return self._proc.pid

    def load(self, key: str, graph: bytes, window: int, n_features: int) -> None:
        """Open ``graph`` (ONNX bytes) in the child under ``key`` and check it serves windows
        [B, window, n_features] (:func:`streamer.model.serving_session`); once per key.
        Raises :class:`ModelRefused` with ONNX Runtime's reason."""
        if key not in self._loaded:
            released = self._wait(self._send(("load", key, graph, window, n_features)))
            self._loaded.add(key)
            self.released_bytes[key] = released

    def forget(self, key: str) -> None:
        """Close the child's session of ``key`` (a replaced model)."""
        if key in self._loaded:
            self._loaded.discard(key)
            self.released_bytes.pop(key, None)
            self._wait(self._send(("forget", key)))

    def submit(self, jobs: list[tuple[str, npt.NDArray[np.floating]]]) -> Pending:
        """Start the forecasts of ``jobs`` (model key, windows [B, W, F]); returns at once
        unless they do not fit the shared memory, in which case they run here, in turns."""
        if self._pending is not None:
            self._pending.result()
        sizes = [len(x) for _, x in jobs]
        elems = sum(x.size for _, x in jobs)
        if elems > len(self._in) or sum(sizes) > len(self._out):
            return self._in_turns(jobs)
        start, runs = 0, []
        for key, x in jobs:
            self._in[start : start + x.size].reshape(x.shape)[...] = x
            runs.append((key, start, x.shape))
            start += x.size
        self._pending = Pending(self, self._send(("run", runs)), sizes)
        return self._pending

    def predict(self, key: str, windows: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
        """One float32 prediction per window [B, W, F], waiting for them."""
        return self.submit([(key, windows)]).result()[0]

    def close(self) -> None:
        """Stop the child (its socket closes; it exits) and release the mapping."""
        if self._proc.poll() is None:
            with contextlib.suppress(OSError):
                self._conn.send(None)
        self._conn.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()

    def _in_turns(self, jobs: list[tuple[str, npt.NDArray[np.floating]]]) -> Pending:
        per_run = len(self._in)
        outs: list[npt.NDArray[np.float32]] = []
        for key, x in jobs:
            per = max(1, int(np.prod(x.shape[1:], dtype=np.int64)))
            step = max(1, min(len(self._out), per_run // per))
            parts = [
                self.submit([(key, x[s : s + step])]).result()[0] for s in range(0, len(x), step)
            ]
            outs.append(np.concatenate(parts) if parts else np.empty(0, np.float32))
        done = Pending(self, 0, [])
        done._value = outs
        return done

    def _status(self) -> int | None:
        """The child's exit status once its socket has closed: it closes while the process
        exits, a moment before the process can be reaped."""
        try:
            return self._proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return None

    def _send(self, request: tuple[Any, ...]) -> int:
        try:
            self._conn.send(request)
        except OSError as exc:
            raise InferenceError(f"inference process exited (status {self._status()})") from exc
        self._sent += 1
        return self._sent

    def _wait(self, ticket: int) -> Any:
        """The child answers in request order; read up to ``ticket``'s answer."""
        while self._received < ticket:
            try:
                reply = self._conn.recv()
            except (EOFError, OSError) as exc:
                raise InferenceError(f"inference process exited (status {self._status()})") from exc
            self._received += 1
            self._replies[self._received] = reply
        status, value = self._replies.pop(ticket)
        if status == "refused":
            raise ModelRefused(value)
        if status != "ok":
            raise InferenceError(f"inference process: {value}")
        return value


# ---------------------------------------------------------------- the child


def _serve(conn: Connection, inp: np.ndarray, out: np.ndarray, intra: int, inter: int) -> None:
    from streamer.manifest import INPUT_NAME, OUTPUT_NAME
    from streamer.model import MAX_BATCH, serving_session

    sessions: dict[str, Any] = {}
    while True:
        try:
            req = conn.recv()
        except EOFError:
            return
        if req is None:
            return
        try:
            if req[0] == "run":
                times, o = [], 0
                for key, start, shape in req[1]:
                    t0 = time.perf_counter()
                    x = inp[start : start + int(np.prod(shape))].reshape(shape)
                    sess = sessions[key]
                    for s in range(0, shape[0], MAX_BATCH):
                        (y,) = sess.run([OUTPUT_NAME], {INPUT_NAME: x[s : s + MAX_BATCH]})
                        out[o + s : o + s + len(y)] = np.asarray(y, np.float32).reshape(len(y))
                    o += shape[0]
                    times.append(time.perf_counter() - t0)
                conn.send(("ok", times))
            elif req[0] == "load":
                _, key, graph, window, n_features = req
                try:
                    sess, released = serving_session(graph, window, n_features, intra, inter)
                except ValueError as exc:
                    conn.send(("refused", str(exc)))
                    continue
                sessions[key] = sess
                conn.send(("ok", released))
            elif req[0] == "forget":
                sessions.pop(req[1], None)
                conn.send(("ok", None))
            elif req[0] == "ready":
                conn.send(("ok", os.getpid()))
            else:
                conn.send(("error", f"unknown request {req[0]!r}"))
        except Exception as exc:  # reported to the parent, which raises InferenceError
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


PROCESS_NAME = b"lstmad-infer"  # what ps -o comm, top and /proc/PID/comm show


def _name_process(name: bytes) -> None:
    """Set this process's name (Linux ``prctl(PR_SET_NAME)``; elsewhere nothing): a forked
    child's command line is its parent's, so the name is what tells them apart."""
    with contextlib.suppress(OSError, AttributeError, TypeError):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(15, ctypes.c_char_p(name[:15]), 0, 0, 0)


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _name_process(PROCESS_NAME)
    fd, path = int(argv[0]), Path(argv[1])
    intra, inter, input_bytes, max_windows = (int(a) for a in argv[2:6])
    conn = Connection(fd)
    with open(path, "r+b") as f:
        buf = mmap.mmap(f.fileno(), input_bytes + 4 * max_windows)
    _serve(conn, *_regions(buf, input_bytes, max_windows), intra, inter)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
