"""The tail of a stream's anomaly score: a generalised Pareto fit over a level. Pure numpy.

Used by :mod:`streamer.detect` to widen its threshold on heavy-tailed streams: the state is
the exceedance rate of ``|u| > level`` and the first two moments of the excess (EWMAs),
started from a Gaussian prior; :func:`tail_quantile` turns them into the ``|u|`` exceeded
with a given probability per point.
"""

from __future__ import annotations

import numpy as np

# |Z| for a standard normal Z, above 2: P = 0.0455, excess mean 0.373, excess 2nd moment 0.254
GAUSS_RATE, GAUSS_M1, GAUSS_M2 = 0.0455, 0.373, 0.254
TAIL_PRIOR = 30.0  # the Gaussian prior weighs as much as this many exceedances
# Lower bound of the Pareto shape: a Gaussian tail above 2 sigma has -0.1; lighter estimates
# are sampling noise of the moments (one quiet stretch would otherwise narrow the threshold).
G_MIN = -0.1
# Upper bound: Student-t with 3 degrees of freedom has 1/3; a few early exceedances can
# make the moment estimate approach 0.5, which would put the threshold out of reach.
G_MAX = 0.3


def tail_quantile(
    rate: np.ndarray, m1: np.ndarray, m2: np.ndarray, level: float, risk: float
) -> np.ndarray:
    """The |u| exceeded with probability ``risk`` per point, from a generalised Pareto tail
    (shape g, scale s by the method of moments) over ``level`` (exceeded at ``rate``)::

        z = level + s / g * ((risk / rate) ** -g - 1)       (level + s * ln(rate / risk), g = 0)

    (Pickands-Balkema-de Haan; the streaming form of SPOT, Siffer et al., KDD 2017.)
    The shape is clipped to [G_MIN, G_MAX] (no lighter than Gaussian, no heavier than a
    Student-t with 3 degrees of freedom) and z is at least ``level``."""
    var = np.maximum(m2 - m1 * m1, 1e-12)
    ratio = m1 * m1 / var
    g = np.clip(0.5 * (1.0 - ratio), G_MIN, G_MAX)
    s = 0.5 * m1 * (ratio + 1.0)
    lr = np.log(np.maximum(rate, 1e-300) / risk)  # > 0 when the tail is fatter than the risk
    small = np.abs(g) < 1e-6
    gs = np.where(small, 1.0, g)
    z = level + np.where(small, s * lr, s / gs * np.expm1(gs * lr))
    return np.maximum(z, level)
