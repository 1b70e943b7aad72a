"""PNG plots for ``lstmad evaluate``: predictions against the true series, and the loss curve.

Edge module (writes files). Uses matplotlib's non-interactive Agg backend, so it runs headless.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt


def _figure() -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 4), dpi=100)
    return fig, ax


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def prediction(
    path: Path, title: str, truth: npt.NDArray[Any], pred: npt.NDArray[Any], segment: int = 0
) -> Path:
    """True series and one prediction curve; ``segment`` > 0 draws each restart separately."""
    fig, ax = _figure()
    ax.plot(truth, label="true data", color="black", linewidth=1)
    if segment:
        for k, start in enumerate(range(0, len(pred), segment)):
            xs = np.arange(start, min(start + segment, len(pred)))
            ax.plot(
                xs,
                pred[xs],
                linewidth=1,
                color="tab:red",
                label="prediction (restarts from true data)" if k == 0 else None,
            )
    else:
        ax.plot(pred, label="prediction", color="tab:red", linewidth=1)
    ax.set_title(title)
    ax.set_xlabel("test point")
    ax.legend(loc="upper right")
    return _save(fig, path)


def loss_curve(path: Path, history: dict[str, list[float]]) -> Path:
    """Training and validation loss (normalised MSE) per epoch, log scale."""
    fig, ax = _figure()
    for key, label in (("loss", "training"), ("val_loss", "validation")):
        if history.get(key):
            ax.plot(np.arange(1, len(history[key]) + 1), history[key], marker="o", label=label)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("MSE of the normalised change")
    ax.set_title("loss")
    ax.legend()
    return _save(fig, path)
