"""Standard errors and intervals for fitted models, from the curvature of the likelihood.

Parameters are fitted on a log scale (they are positive); at the optimum the
inverse of the Hessian of the negative log-likelihood in log-parameters is
their covariance (the observed information). The Hessian is taken by central
differences: of the analytic gradient where a model has one, of the
log-likelihood itself otherwise. A parameter's standard error is then
theta * se(log theta) (the delta method, what the `lifetimes` package reports),
and its interval theta * exp(-/+ z se(log theta)): always positive and always
around the estimate, where theta -/+ z se can fall below zero.

Predictions (expected purchases, CLV) get intervals by the delta method too:
the gradient of the prediction in log-parameters, again by central
differences, gives its variance; the interval is taken on the log of the
prediction for the same reasons.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from crmcore.errors import ValidationError

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    Array = NDArray[np.float64]

STEP = 1e-4
"""Central-difference step in log-parameters (a relative step of 0.01% on each parameter)."""


def z_value(level: float) -> float:
    """The two-sided standard normal quantile of a confidence level (1.96 for 0.95)."""
    from scipy.stats import norm

    if isinstance(level, bool) or not isinstance(level, int | float) or not 0 < level < 1:
        raise ValidationError("level", level, "must be a probability between 0 and 1")
    return float(norm.ppf(0.5 + level / 2))


def hessian_from_gradient(gradient: Callable[[Array], Array], at: Array, step: float = STEP) -> Array:
    """Central differences of a gradient, symmetrised."""
    import numpy as np

    k = at.size
    out = np.empty((k, k))
    for j in range(k):
        shift = np.zeros(k)
        shift[j] = step
        out[:, j] = (gradient(at + shift) - gradient(at - shift)) / (2 * step)
    symmetric: Array = (out + out.T) / 2
    return symmetric


def hessian_from_value(value: Callable[[Array], float], at: Array, step: float = 1e-3) -> Array:
    """Central second differences of a scalar function."""
    import numpy as np

    k = at.size
    out = np.empty((k, k))
    centre = value(at)
    unit = np.eye(k) * step
    for i in range(k):
        out[i, i] = (value(at + unit[i]) - 2 * centre + value(at - unit[i])) / step**2
        for j in range(i):
            out[i, j] = out[j, i] = (
                value(at + unit[i] + unit[j]) - value(at + unit[i] - unit[j])
                - value(at - unit[i] + unit[j]) + value(at - unit[i] - unit[j])
            ) / (4 * step**2)
    return out


def covariance(negative_hessian: Array) -> Array | None:
    """The inverse of the observed information, or None where it is not positive definite
    (the optimum is flat or a saddle in some direction: no standard error means anything)."""
    import numpy as np

    try:
        np.linalg.cholesky(negative_hessian)
    except np.linalg.LinAlgError:
        return None
    inverse: Array = np.linalg.inv(negative_hessian).astype(np.float64)
    return inverse


def as_rows(matrix: Array | None) -> tuple[tuple[float, ...], ...] | None:
    """A matrix as nested tuples (what a frozen model can hold and compare)."""
    return None if matrix is None else tuple(tuple(map(float, row)) for row in matrix)


def parameter_table(
    names: Sequence[str], values: Sequence[float],
    log_covariance: tuple[tuple[float, ...], ...] | None, level: float,
) -> dict[str, dict[str, float]]:
    """Per parameter: estimate, standard error, lower and upper bound (NaN without a covariance)."""
    z = z_value(level)
    table = {}
    for i, (name, value) in enumerate(zip(names, values, strict=True)):
        se_log = math.sqrt(log_covariance[i][i]) if log_covariance is not None else math.nan
        table[name] = {"estimate": value, "se": value * se_log,
                       "lower": value * math.exp(-z * se_log), "upper": value * math.exp(z * se_log)}
    return table


def delta_interval(
    predict: Callable[[Array], Array], at: Array, log_covariance: Array, level: float,
    step: float = STEP,
) -> tuple[Array, Array, Array]:
    """Estimate, lower and upper bound of a non-negative prediction by the delta method on
    its log; a prediction of 0 has the interval [0, 0]."""
    import numpy as np

    z = z_value(level)
    estimate = predict(at)
    gradient = []
    for j in range(at.size):
        shift = np.zeros(at.size)
        shift[j] = step
        gradient.append((predict(at + shift) - predict(at - shift)) / (2 * step))
    g = np.column_stack(gradient) if gradient else np.zeros((estimate.size, 0))
    variance = np.einsum("ij,jk,ik->i", g, log_covariance, g)
    with np.errstate(divide="ignore", invalid="ignore"):
        se_log = np.where(estimate > 0, np.sqrt(np.maximum(variance, 0.0)) / estimate, 0.0)
    return estimate, estimate * np.exp(-z * se_log), estimate * np.exp(z * se_log)
