"""A serving daemon swaps its model on SIGHUP, and refuses a broken file while it keeps serving."""

from __future__ import annotations

import shutil
import signal
import time
import uuid
from pathlib import Path

from tests import daemon_support as ds
from tests.test_routing import relabel


def wait_for(pred, timeout_s: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return False


def test_sighup_reloads_and_a_broken_file_is_refused(kafka_bootstrap: str, tmp_path: Path) -> None:
    base = f"rl-{uuid.uuid4().hex[:8]}"
    topics = ds.topics_for(base)
    ds.create_topics(kafka_bootstrap, {topics["input_topic"]: 1})
    model = tmp_path / "model.onnx"
    shutil.copy(ds.MODEL, model)
    port = ds.new_port()
    config = ds.write_config(tmp_path / "c.toml", kafka_bootstrap, topics, port)
    config.write_text(config.read_text().replace(str(ds.MODEL), str(model)))
    streams = ds.make_streams(("normal",), "hl")
    with ds.daemon(config, port, tmp_path / "d.log") as d:
        d.wait_ready()
        ds.produce(kafka_bootstrap, topics["input_topic"], ds.interleave(streams, 0, 100))
        assert wait_for(lambda: d.metric("lstmad_points_total") == 100, 30)

        def reloads(result: str) -> float:
            return d.metric(f'lstmad_model_reloads_total{{result="{result}"}}')

        model.write_bytes(b"half-copied garbage")
        d.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: reloads("refused") == 1, 15), d.tail()
        relabel(ds.MODEL, tmp_path / "v9.onnx", "9")
        (tmp_path / "v9.onnx").replace(model)
        d.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: reloads("ok") == 2, 15), d.tail()
        assert 'default_version="9"' in d.get("/metrics")[1]
        # Windows were kept: the very next point is scored, no new warm-up.
        before = d.metric("lstmad_predictions_total")
        ds.produce(kafka_bootstrap, topics["input_topic"], ds.interleave(streams, 100, 101))
        assert wait_for(lambda: d.metric("lstmad_predictions_total") == before + 1, 15)
        assert d.stop()[0] == 0
    log = d.tail(50_000)
    assert "model reload refused; the previous model keeps serving" in log
    assert '"msg": "model reloaded"' in log
