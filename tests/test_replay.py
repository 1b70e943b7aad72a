"""`lstmad replay`: JSON lines or CSV through the daemon's pipeline, alerts as JSON lines."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from streamer import alerts
from streamer.cli import main
from tests import daemon_support as ds

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def streams() -> list[ds.Stream]:
    return ds.make_streams(("spike", "dip", "normal"), "rp")


def write_jsonl(path: Path, streams: list[ds.Stream]) -> Path:
    path.write_bytes(b"".join(v + b"\n" for _, v in ds.interleave(streams)))
    return path


def write_csv(path: Path, streams: list[ds.Stream], extra: str | None = None) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["stream", "ts", "value", *([extra] if extra else [])])
        for i in range(ds.N):
            for s in streams:
                w.writerow([s.name, s.ts(i), repr(float(s.values[i])), *(["1"] if extra else [])])
    return path


def replay(*args: str) -> int:
    return main(["replay", "--config", str(REPO / "config.toml"), "--no-progress", *args])


def read(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_jsonl_and_csv_give_the_same_alerts(tmp_path: Path, streams: list[ds.Stream]) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert replay(str(write_jsonl(tmp_path / "in.jsonl", streams)), "-o", str(a)) == 0
    assert replay(str(write_csv(tmp_path / "in.csv", streams)), "-o", str(b)) == 0
    from_json, from_csv = read(a), read(b)
    for s in streams[:2]:
        assert ds.episode_ok(from_json, s), s.name  # type: ignore[arg-type]
    assert not [x for x in from_json if x["stream"] == streams[2].name]
    assert [alerts.content(x) for x in from_json] == [alerts.content(x) for x in from_csv]
    assert from_json[0]["source"] == {
        "topic": "file:in.jsonl",
        "partition": 0,
        "offset": from_json[0]["source"]["offset"],
    }  # type: ignore[index]


def test_stdout_progress_and_summary(tmp_path: Path, streams: list[ds.Stream]) -> None:
    data = write_jsonl(tmp_path / "in.jsonl", streams)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "streamer",
            "replay",
            str(data),
            "--config",
            str(REPO / "config.toml"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(x) for x in proc.stdout.splitlines()]
    assert lines and all(x["schema"] == "lstmad.alert/v1" for x in lines)
    assert "row/s" in proc.stderr or "row]" in proc.stderr  # tqdm's bar
    assert f"{ds.N * 3} rows, {len(lines)} alert events, 0 dead-lettered, 3 streams" in proc.stderr


def test_unusable_rows_are_dead_lettered_not_fatal(
    tmp_path: Path, streams: list[ds.Stream]
) -> None:
    data = tmp_path / "mixed.jsonl"
    good = [v for _, v in ds.interleave(streams[:1], 0, 60)]
    data.write_bytes(
        b"\n".join(
            [good[0], b"{oops", good[1], b'{"stream": "x", "ts": 1, "value": NaN}', *good[2:]]
        )
        + b"\n"
    )
    dead = tmp_path / "dead.jsonl"
    assert replay(str(data), "-o", str(tmp_path / "a.jsonl"), "--dead-letters", str(dead)) == 0
    got = read(dead)
    assert [d["reason"] for d in got] == ["not_json", "non_finite"]
    assert [d["source"]["offset"] for d in got] == [2, 4]  # type: ignore[index]
    assert got[0]["payload"] == "{oops"


def test_csv_with_an_unknown_feature_column_is_dead_lettered(
    tmp_path: Path, streams: list[ds.Stream]
) -> None:
    data = write_csv(tmp_path / "x.csv", streams[:1], extra="cpu")
    dead = tmp_path / "dead.jsonl"
    assert replay(str(data), "-o", str(tmp_path / "a.jsonl"), "--dead-letters", str(dead)) == 0
    reasons = {d["reason"] for d in read(dead)}
    assert reasons == {"unknown_feature"}


@pytest.mark.parametrize(
    ("content", "needle"),
    [("t,value\n1,2\n", "lacks the 'stream' column"), ("stream,ts\na,1\n", "no value column")],
)
def test_bad_csv_headers_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, needle: str
) -> None:
    p = tmp_path / "bad.csv"
    p.write_text(content)
    assert replay(str(p), "-o", str(tmp_path / "a.jsonl")) == 2
    assert needle in capsys.readouterr().err


def test_missing_file_and_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert replay(str(tmp_path / "none.jsonl")) == 2
    assert "no such file" in capsys.readouterr().err
    cfg = tmp_path / "c.toml"
    cfg.write_text("[kafka]\ntopic = 'x'\n")
    assert main(["replay", "--config", str(cfg), str(cfg)]) == 2
    assert "unknown key 'topic'" in capsys.readouterr().err
