"""Train and evaluate every bundled example and print the figures issue 4 asks for.

``python -m training.examples.run_all [sine stock ops]``: for each example, the wall time of
``train`` (fresh process: TensorFlow import included), the ONNX-vs-Keras parity of the export,
and the test split of ``evaluate`` (model vs naive persistence vs moving average, skill).
Targets checked: sine point-by-point RMSE <= 0.2 x naive with training under 60 s; stock
skill >= -0.02. Exit status 1 if a target is missed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from training import config
from training.evaluate import evaluate

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
EXAMPLES = ("sine", "stock", "ops")


def run(name: str) -> dict[str, object]:
    path = HERE / f"{name}.toml"
    t0 = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "training", "train", "--config", str(path)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    wall = time.monotonic() - t0
    cfg = config.load(path)
    summary = json.loads((cfg.artifacts / "train.json").read_text())
    report = evaluate(cfg)
    t = report["test"]
    return {
        "example": name,
        "train_wall_s": round(wall, 1),
        "fit_s": summary["fit_seconds"],
        "parity_relative": summary["export"]["parity_relative"],
        "model_bytes": summary["export"]["bytes"],
        "rmse_model": t["model"]["rmse"],
        "rmse_naive": t["naive"]["rmse"],
        "rmse_moving_average": t["moving_average"]["rmse"],
        "rmse_ratio_model_naive": t["model"]["rmse"] / t["naive"]["rmse"],
        "skill": t["skill"],
        "verdict": report["verdict"],
    }


def main() -> int:
    names = sys.argv[1:] or list(EXAMPLES)
    rows = [run(n) for n in names]
    ok = True
    for r in rows:
        print(json.dumps(r))
        if r["example"] == "sine":
            ok &= r["rmse_ratio_model_naive"] <= 0.2 and r["train_wall_s"] < 60  # type: ignore[operator]
        if r["example"] == "stock":
            ok &= r["skill"] >= -0.02  # type: ignore[operator]
    print("targets:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
