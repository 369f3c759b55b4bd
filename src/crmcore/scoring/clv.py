"""Customer lifetime value: BG/NBD and Pareto/NBD for purchase counts, Gamma-Gamma for spend.

Each model is fitted by maximum likelihood on the per-customer summary
(frequency, recency, T and, for spend, the mean repeat value; see
`crmcore.scoring.summary`). numpy and scipy (the `analytics` extra) are imported
only when a model is fitted or used, so the core imports without them.

Fitting works on the distinct summary rows with their counts (customers with
the same history add the same term to the likelihood), with analytic gradients
where the model has them; predictions share the costly special functions
between customers with the same (frequency, T).

References: Fader, Hardie & Lee (2005), "Counting Your Customers the Easy Way:
An Alternative to the Pareto/NBD Model", Marketing Science 24(2); Fader &
Hardie (2005), "A Note on Deriving the Pareto/NBD Model and Related
Expressions"; Fader & Hardie (2013), "The Gamma-Gamma Model of Monetary Value".
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import attrs

from crmcore.errors import CRMError, MissingExtra, ValidationError
from crmcore.scoring import arguments, uncertainty
from crmcore.scoring.horizon import Horizon, discount_of, periods_of

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import ArrayLike, NDArray

    from crmcore.scoring.summary import Summary

    Array = NDArray[np.float64]

log = logging.getLogger(__name__)
Covariance = tuple[tuple[float, ...], ...]


def require() -> None:
    """Raise MissingExtra (naming the extra to install) unless numpy and scipy import."""
    try:
        import numpy  # noqa: F401
        import scipy.optimize
        import scipy.special  # noqa: F401
    except ImportError:
        raise MissingExtra("lifetime value", "analytics") from None


class FitError(CRMError):
    """The likelihood could not be maximised (too little or degenerate data)."""


def _arrays(*columns: ArrayLike) -> list[Array]:
    import numpy as np

    try:
        out = [np.asarray(c, dtype=np.float64) for c in columns]
    except (ValueError, TypeError):
        raise ValidationError("columns", type(columns[0]).__name__, "must be columns of numbers") from None
    if len({a.shape for a in out}) > 1:
        raise ValidationError("columns", [a.shape for a in out], "must all have the same length")
    return out


def _check_summary(x: Array, tx: Array, T: Array) -> None:
    import numpy as np

    def refuse(field: str, bad: Any, values: Array, reason: str) -> None:
        if np.any(bad):
            row = int(np.argmax(bad))
            raise ValidationError(f"{field}[{row}]", float(values[row]), reason)

    for field, values in (("frequency", x), ("recency", tx), ("T", T)):
        refuse(field, ~np.isfinite(values), values, "must be a finite number")
    refuse("frequency", (x < 0) | (x != np.floor(x)), x, "must be a whole number >= 0")
    refuse("recency", (tx < 0) | (tx > T), tx, "must lie between 0 and T")
    refuse("recency", (x == 0) & (tx != 0), tx, "must be 0 for a customer without repeat purchases")


def _compress(*columns: Array) -> tuple[list[Array], Array]:
    """Distinct rows and how many times each occurs (a lexsort: cheaper than unique(axis=0))."""
    import numpy as np

    order = np.lexsort(columns[::-1])
    ordered = [c[order] for c in columns]
    changed = np.zeros(order.size, dtype=bool)
    changed[:1] = True
    for c in ordered:
        changed[1:] |= c[1:] != c[:-1]
    starts = np.flatnonzero(changed)
    counts = np.diff(np.append(starts, order.size)).astype(np.float64)
    return [c[starts] for c in ordered], counts


def _fit_inputs(
    frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
) -> tuple[list[Array], list[Array], Array]:
    """What a purchase-count fit starts from: the checked columns (x, tx, T), their
    distinct rows and how many customers share each."""
    require()
    x, tx, age = _arrays(frequency, recency, T)
    _check_summary(x, tx, age)
    if not x.size:
        raise FitError("no customers to fit on")
    distinct, weight = _compress(x, tx, age)
    return [x, tx, age], distinct, weight


def _maximise(
    objective: Callable[[Array], tuple[float, Array]] | Callable[[Array], float],
    start: Sequence[float],
    *,
    gradient: bool,
) -> Array:
    """Minimise a negative log-likelihood over log-parameters (so parameters stay positive)."""
    import numpy as np
    from scipy.optimize import minimize

    with np.errstate(all="ignore"):
        if gradient:
            result = minimize(objective, np.log(start), jac=True, method="BFGS",
                              options={"gtol": 1e-8, "maxiter": 2000})
        else:
            result = minimize(objective, np.log(start), method="Nelder-Mead",
                              options={"xatol": 1e-7, "fatol": 1e-10, "maxiter": 20000,
                                       "maxfev": 40000})
    if not np.all(np.isfinite(result.x)) or not np.isfinite(result.fun):
        raise FitError(f"{NO_MAXIMUM}: {result.message}")
    return np.exp(result.x)  # type: ignore[no-any-return]


class _Parameters:
    """What every fitted model shares: its parameters by name, their covariance (in
    log-parameters, see `crmcore.scoring.uncertainty`) and a copy at other values."""

    NAMES: ClassVar[tuple[str, ...]]
    log_covariance: Covariance | None

    @property
    def params(self) -> dict[str, float]:
        return {name: float(getattr(self, name)) for name in self.NAMES}

    def log_params(self) -> Array:
        import numpy as np

        found: Array = np.log(np.array([getattr(self, name) for name in self.NAMES], dtype=np.float64))
        return found

    def at(self, log_params: Array) -> Any:
        """The same model with other (log-)parameters: what the delta method perturbs."""
        import numpy as np

        return attrs.evolve(self, **dict(zip(self.NAMES, map(float, np.exp(log_params)), strict=True)))  # type: ignore[misc]

    def summary(self, level: float = 0.95) -> dict[str, dict[str, float]]:
        """Estimate, standard error and `level` interval of each parameter (NaN when the
        likelihood is flat at the optimum)."""
        return uncertainty.parameter_table(self.NAMES, list(self.params.values()),
                                           self.log_covariance, level)

    @property
    def standard_errors(self) -> dict[str, float]:
        return {name: row["se"] for name, row in self.summary().items()}


RUN_OFF = 20.0
"""A standard error of a log-parameter above this (an interval spanning e^±39) means the
optimiser stopped on a ridge running off to a boundary: no interval is given."""

NO_MAXIMUM = "the likelihood has no maximum on this data (too few or too alike customers?)"


def _information(negative_hessian: Array) -> Covariance | None:
    """The covariance of the log-parameters at a fit's optimum: None where the observed
    information is not positive definite (flat in some direction: a limiting model, such as
    Gamma-Gamma with q -> infinity when every customer's mean spend is alike, which still
    predicts), and None too where a parameter's standard error says it runs off along a
    ridge: the same limiting model, its interval meaningless. A fit whose predictions are
    not finite is refused where they are made."""
    import numpy as np

    found = uncertainty.covariance(negative_hessian)
    if found is not None and np.sqrt(np.maximum(np.diag(found), 0.0)).max() > RUN_OFF:
        return None
    return uncertainty.as_rows(found)


class PurchaseModel(Protocol):
    """What lifetime value needs of a purchase-count model."""

    def p_alive(self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> Array: ...

    def expected_purchases(
        self, t: float | Sequence[float], frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> Array: ...

    def forecast(
        self, horizons: Sequence[float], weights: Sequence[float], frequency: ArrayLike,
        recency: ArrayLike, T: ArrayLike,
    ) -> tuple[Array, Array]:
        """Expected purchases up to the last horizon, and the purchases expected between
        consecutive horizons summed with `weights` (discount factors)."""
        ...


def _forecast_from_matrix(
    model: PurchaseModel, horizons: Sequence[float], weights: Sequence[float], x: Array,
    tx: Array, T: Array,
) -> tuple[Array, Array]:
    import numpy as np

    cumulative = model.expected_purchases(list(horizons), x, tx, T)
    return cumulative[:, -1], np.diff(cumulative, axis=1, prepend=0.0) @ np.asarray(weights)


# ---- BG/NBD ----


@attrs.frozen
class BetaGeo(_Parameters):
    """BG/NBD: purchases while alive are Poisson (gamma-distributed rates r, alpha); after
    each purchase the customer drops out with a beta-distributed probability (a, b)."""

    NAMES: ClassVar[tuple[str, ...]] = ("r", "alpha", "a", "b")
    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float = math.nan
    customers: int = 0
    log_covariance: Covariance | None = attrs.field(default=None, eq=False, repr=False)

    @classmethod
    def fit(
        cls, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike,
        start: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
    ) -> BetaGeo:
        _, (ux, utx, uT), weight = _fit_inputs(frequency, recency, T)
        import numpy as np

        n = float(weight.sum())
        likelihood = _BgObjective(ux, utx, uT, weight)

        def objective(log_params: Array) -> tuple[float, Array]:
            ll, grad = likelihood(log_params)
            return -ll / n, -grad / n

        found = _maximise(objective, start, gradient=True)
        ll = likelihood(np.log(found))[0]
        r, alpha, a, b = map(float, found)
        curvature = uncertainty.hessian_from_gradient(lambda p: likelihood(p)[1], np.log(found))
        return cls(r, alpha, a, b, log_likelihood=float(ll), customers=int(n),
                   log_covariance=_information(-curvature))

    def probability_of_purchases(self, n: int | Sequence[int], t: float) -> Array:
        """P(X(t) = n): the probability that a customer picked at random makes exactly n
        purchases in a period of length t from their first (Fader, Hardie & Lee 2005, eq. 8)."""
        import numpy as np
        from scipy.special import betainc, betaln, gammaln

        require()
        counts = np.asarray(arguments.numbers(n, "n", whole=True), dtype=np.float64)
        t = arguments.number(t, "t", low_open=True)
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        log_stay = r * np.log(alpha / (alpha + t))
        log_ratio = np.log(t / (alpha + t))

        def log_nbd(k: Array) -> Array:  # log of the NBD probability of k purchases by t
            return gammaln(r + k) - gammaln(r) - gammaln(k + 1) + log_stay + k * log_ratio  # type: ignore[no-any-return]

        alive = np.exp(betaln(a, b + counts) - betaln(a, b) + log_nbd(counts))
        # P(NBD >= n) = I_{t/(alpha+t)}(n, r): the regularised incomplete beta, not 1 - a sum
        with np.errstate(divide="ignore", invalid="ignore"):
            tail = betainc(np.maximum(counts, 1.0), r, t / (alpha + t))
            died = np.where(counts > 0, np.exp(betaln(a + 1, b + counts - 1) - betaln(a, b)), 0.0)
        out = alive + died * np.where(counts > 0, tail, 0.0)
        return out  # type: ignore[no-any-return]

    def expected_purchases_from_start(self, t: float | Sequence[float]) -> Array:
        """E[X(t)]: purchases expected from a new customer in a period of length t after
        their first purchase (eq. 9; NaN on its removable singularities a = 1, a + b = 1)."""
        import numpy as np
        from scipy.special import hyp2f1

        require()
        ts = np.asarray(arguments.numbers(t, "t"), dtype=np.float64)
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        z = ts / (alpha + ts)
        out = (a + b - 1) / (a - 1) * (1 - (alpha / (alpha + ts)) ** r * hyp2f1(r, b, a + b - 1, z))
        return out  # type: ignore[no-any-return]

    def log_likelihoods(self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> Array:
        """Each customer's log-likelihood under the model."""
        import numpy as np

        require()
        x, tx, age = _arrays(frequency, recency, T)
        return _bgnbd_ll(np.log([self.r, self.alpha, self.a, self.b]), x, tx, age)

    def _log_odds_dead(self, x: Array, tx: Array, T: Array) -> Array:
        import numpy as np

        with np.errstate(divide="ignore", invalid="ignore"):
            odds = (np.log(self.a) - np.log(np.where(x > 0, self.b + x - 1, 1.0))
                    + (self.r + x) * (np.log(self.alpha + T) - np.log(self.alpha + tx)))
        return np.where(x > 0, odds, -np.inf)

    def p_alive(self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> Array:
        """P(still a customer at T | history): 1 without a repeat purchase, else falls with T - recency."""
        from scipy.special import expit

        require()
        x, tx, age = _arrays(frequency, recency, T)
        return expit(-self._log_odds_dead(x, tx, age))  # type: ignore[no-any-return]

    def expected_purchases(
        self, t: float | Sequence[float], frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> Array:
        """Expected purchases in (T, T + t] given each history; one column per t if t is a list."""
        import numpy as np

        require()
        scale, remaining, inverse = self._factored(t, *_arrays(frequency, recency, T))
        out: Array = scale[:, None] * remaining[inverse]
        return out if np.ndim(t) else out[:, 0]

    def forecast(
        self, horizons: Sequence[float], weights: Sequence[float], frequency: ArrayLike,
        recency: ArrayLike, T: ArrayLike,
    ) -> tuple[Array, Array]:
        """See `PurchaseModel.forecast`; weighted per distinct (x, T) pair, not per customer."""
        import numpy as np

        require()
        scale, remaining, inverse = self._factored(horizons, *_arrays(frequency, recency, T))
        per_pair = np.diff(remaining, axis=1, prepend=0.0) @ np.asarray(weights, dtype=np.float64)
        return scale * remaining[inverse, -1], scale * per_pair[inverse]

    def _factored(
        self, t: float | Sequence[float], x: Array, tx: Array, age: Array
    ) -> tuple[Array, Array, Any]:
        """E[purchases in (T, T+t]] = scale (per customer) * remaining (per distinct (x, T) and t)."""
        import numpy as np
        from scipy.special import hyp2f1

        horizons = np.atleast_1d(np.asarray(t, dtype=np.float64))
        if np.any(horizons < 0):
            raise ValidationError("t", t, "horizons must be >= 0")
        # the hypergeometric term depends on (x, T) only: compute it once per distinct pair
        px, pT, inverse = _distinct_pairs(x, age)
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        scale = (a + b + x - 1) / (a - 1) * self.p_alive(x, tx, age)
        z = horizons / (alpha + pT[:, None] + horizons)  # one row per pair, one column per t
        k = (r + px)[:, None]
        remaining = 1.0 - np.exp(k * np.log1p(-z)) * hyp2f1(k, (b + px)[:, None],
                                                             (a + b + px - 1)[:, None], z)
        return scale, remaining, inverse


def _distinct_pairs(x: Array, y: Array) -> tuple[Array, Array, Any]:
    """The distinct (x, y) pairs and, for each row, the index of its pair (sorting 1-d keys
    is several times cheaper than unique(axis=0))."""
    import numpy as np

    xs, xi = np.unique(x, return_inverse=True)
    ys, yi = np.unique(y, return_inverse=True)
    keys, inverse = np.unique(xi.reshape(-1) * ys.size + yi.reshape(-1), return_inverse=True)
    return xs[keys // ys.size], ys[keys % ys.size], inverse.reshape(-1)


def _levels(x: Array, weight: Array) -> tuple[Array, Array]:
    """Distinct frequencies and the total weight of each."""
    import numpy as np

    xs, xi = np.unique(x, return_inverse=True)
    totals: Array = np.bincount(xi.reshape(-1), weights=weight, minlength=xs.size).astype(np.float64)
    return xs, totals


def _bgnbd_ll(log_params: Array, x: Array, tx: Array, T: Array) -> Array:
    """Each customer's log-likelihood."""
    import numpy as np
    from scipy.special import gammaln

    r, alpha, a, b = np.exp(log_params)
    repeat = x > 0
    a3 = -(r + x) * np.log(alpha + T)
    with np.errstate(divide="ignore", invalid="ignore"):
        a4 = np.where(repeat, np.log(a) - np.log(np.where(repeat, b + x - 1, 1.0))
                      - (r + x) * np.log(alpha + tx), -np.inf)
    return (gammaln(r + x) - gammaln(r) + r * np.log(alpha) + gammaln(a + b)  # type: ignore[no-any-return]
            + gammaln(b + x) - gammaln(b) - gammaln(a + b + x) + np.logaddexp(a3, a4))


class _BgObjective:
    """The weighted log-likelihood of distinct summary rows and its gradient in log-params.

    Customers without repeat purchases reduce to r * log(alpha / (alpha + T)); for the
    others, special functions of the frequency are computed once per distinct value.
    """

    def __init__(self, x: Array, tx: Array, T: Array, weight: Array) -> None:
        zero = x == 0
        self.T0, self.w0 = T[zero], weight[zero]
        self.x, self.tx, self.T, self.w = x[~zero], tx[~zero], T[~zero], weight[~zero]
        self.xs, self.xw = _levels(self.x, self.w)
        self.n1 = float(self.w.sum())

    def __call__(self, log_params: Array) -> tuple[float, Array]:
        import numpy as np
        from scipy.special import digamma, gammaln

        r, alpha, a, b = np.exp(log_params)
        log_alpha = np.log(alpha)
        # no repeat purchase
        lt0 = np.log(alpha + self.T0)
        ll = r * (self.w0 @ (log_alpha - lt0))
        d_r = self.w0 @ (log_alpha - lt0)
        d_alpha = r * (self.w0 @ (1.0 / alpha - 1.0 / (alpha + self.T0)))
        # repeat purchases
        x, w, xs, xw, n1 = self.x, self.w, self.xs, self.xw, self.n1
        rx = r + x
        lt, ltx = np.log(alpha + self.T), np.log(alpha + self.tx)
        bx1 = b + x - 1
        a3 = -rx * lt
        a4 = np.log(a) - np.log(bx1) - rx * ltx
        mix = np.logaddexp(a3, a4)
        w4 = np.exp(a4 - mix)
        w3 = 1.0 - w4
        ww4 = w * w4
        constant = -gammaln(r) + r * log_alpha + gammaln(a + b) - gammaln(b)
        ll += xw @ (gammaln(r + xs) + gammaln(b + xs) - gammaln(a + b + xs)) + n1 * constant + w @ mix
        d_r += xw @ digamma(r + xs) + n1 * (log_alpha - digamma(r)) - (w * w3) @ lt - ww4 @ ltx
        d_alpha += n1 * r / alpha - (w * rx) @ (w3 / (alpha + self.T) + w4 / (alpha + self.tx))
        psi_abx = xw @ digamma(a + b + xs)
        d_a = n1 * digamma(a + b) - psi_abx + ww4.sum() / a
        d_b = n1 * (digamma(a + b) - digamma(b)) + xw @ digamma(b + xs) - psi_abx - ww4 @ (1.0 / bx1)
        return float(ll), np.array([d_r, d_alpha, d_a, d_b]) * np.array([r, alpha, a, b])


# ---- Pareto/NBD ----


@attrs.frozen
class ParetoNBD(_Parameters):
    """Pareto/NBD: Poisson purchases (gamma rates r, alpha) and an exponential lifetime
    (gamma dropout rates s, beta); the original "buy till you die" model."""

    NAMES: ClassVar[tuple[str, ...]] = ("r", "alpha", "s", "beta")
    r: float
    alpha: float
    s: float
    beta: float
    log_likelihood: float = math.nan
    customers: int = 0
    log_covariance: Covariance | None = attrs.field(default=None, eq=False, repr=False)

    @classmethod
    def fit(
        cls, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike,
        start: Sequence[float] = (0.5, 10.0, 0.5, 10.0),
    ) -> ParetoNBD:
        (x, tx, age), (ux, utx, uT), weight = _fit_inputs(frequency, recency, T)
        n = float(weight.sum())

        def objective(log_params: Array) -> float:
            import numpy as np

            r, alpha, s, beta = np.exp(log_params)
            value = float(weight @ _pareto_ll(r, alpha, s, beta, ux, utx, uT))
            return -value / n if np.isfinite(value) else math.inf

        found = _maximise(objective, start, gradient=False)
        r, alpha, s, beta = map(float, found)
        import numpy as np

        curvature = uncertainty.hessian_from_value(lambda p: -objective(p) * n, np.log(found))
        model = cls(r, alpha, s, beta, customers=int(n),
                    log_covariance=_information(-curvature))
        return attrs.evolve(model, log_likelihood=float(model.log_likelihoods(x, tx, age).sum()))

    def log_likelihoods(self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> Array:
        require()
        x, tx, age = _arrays(frequency, recency, T)
        return _pareto_ll(self.r, self.alpha, self.s, self.beta, x, tx, age)

    def expected_purchases_from_start(self, t: float | Sequence[float]) -> Array:
        """E[X(t)]: purchases expected from a new customer in a period of length t after
        their first purchase (Fader & Hardie 2005, eq. 17)."""
        import numpy as np

        require()
        ts = np.asarray(arguments.numbers(t, "t"), dtype=np.float64)
        r, alpha, s, beta = self.r, self.alpha, self.s, self.beta
        shrink = np.log1p(ts / beta)
        share = shrink if abs(s - 1) < 1e-12 else -np.expm1(-(s - 1) * shrink) / (s - 1)
        found: Array = r * beta / alpha * share
        return found

    def p_alive(self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> Array:
        import numpy as np
        from scipy.special import expit

        require()
        x, tx, age = _arrays(frequency, recency, T)
        r, alpha, s, beta = self.r, self.alpha, self.s, self.beta
        odds = (np.log(s / (r + s + x)) + (r + x) * np.log(alpha + age) + s * np.log(beta + age)
                + _pareto_log_a0(r, alpha, s, beta, x, tx, age))
        return expit(-odds)  # type: ignore[no-any-return]

    def expected_purchases(
        self, t: float | Sequence[float], frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> Array:
        import numpy as np

        require()
        x, tx, age = _arrays(frequency, recency, T)
        horizons = np.atleast_1d(np.asarray(t, dtype=np.float64))
        r, alpha, s, beta = self.r, self.alpha, self.s, self.beta
        if np.any(horizons < 0):
            raise ValidationError("t", t, "horizons must be >= 0")
        alive = self.p_alive(x, tx, age)
        rate = (r + x) * (beta + age) / (alpha + age) * alive
        columns = []
        for h in horizons:
            shrink = np.log1p(h / (beta + age))  # log((beta + T + t) / (beta + T))
            # (1 - ((beta+T)/(beta+T+t))^(s-1)) / (s-1), continuous through s = 1
            share = shrink if abs(s - 1) < 1e-12 else -np.expm1(-(s - 1) * shrink) / (s - 1)
            columns.append(rate * share)
        out = np.column_stack(columns)
        return out if np.ndim(t) else out[:, 0]

    def forecast(
        self, horizons: Sequence[float], weights: Sequence[float], frequency: ArrayLike,
        recency: ArrayLike, T: ArrayLike,
    ) -> tuple[Array, Array]:
        """See `PurchaseModel.forecast`."""
        return _forecast_from_matrix(self, horizons, weights, *_arrays(frequency, recency, T))


def _pareto_log_a0(r: float, alpha: float, s: float, beta: float, x: Array, tx: Array,
                   T: Array) -> Array:
    import numpy as np
    from scipy.special import hyp2f1

    second: Any
    if alpha >= beta:
        top, gap, second = alpha, alpha - beta, s + 1
    else:
        top, gap, second = beta, beta - alpha, r + x
    power = r + s + x

    def log_f(y: Array) -> Array:
        found = np.log(hyp2f1(power, second, power + 1, gap / (top + y))) - power * np.log(top + y)
        return found  # type: ignore[no-any-return]

    first, last = log_f(tx), log_f(T)
    with np.errstate(divide="ignore", invalid="ignore"):
        return first + np.log1p(-np.exp(last - first))


def _pareto_ll(r: float, alpha: float, s: float, beta: float, x: Array, tx: Array,
               T: Array) -> Array:
    import numpy as np
    from scipy.special import gammaln

    with np.errstate(all="ignore"):
        alive_to_t = -(r + x) * np.log(alpha + T) - s * np.log(beta + T)
        died = np.log(s / (r + s + x)) + _pareto_log_a0(r, alpha, s, beta, x, tx, T)
        return (gammaln(r + x) - gammaln(r) + r * np.log(alpha) + s * np.log(beta)  # type: ignore[no-any-return]
                + np.logaddexp(alive_to_t, died))


# ---- Gamma-Gamma ----


@attrs.frozen
class Exclusion:
    """Customers a fit left out, and why."""

    reason: str
    customer_ids: tuple[str, ...]

    @property
    def count(self) -> int:
        return len(self.customer_ids)

    def explain(self) -> dict[str, str | int]:
        shown = ", ".join(self.customer_ids[:5]) + (", ..." if self.count > 5 else "")
        return {"reason": self.reason, "count": self.count, "customers": shown}


def _excluded(
    model: str, reasons: Sequence[tuple[str, Any]], customer_ids: Sequence[str] | None
) -> tuple[Exclusion, ...]:
    """An Exclusion per reason with any customer in its mask, each logged once."""
    import numpy as np

    found = []
    for reason, mask in reasons:
        rows = np.flatnonzero(mask)
        if rows.size:
            ids = tuple(customer_ids[int(i)] for i in rows) if customer_ids is not None else tuple(
                f"#{i}" for i in rows)
            found.append(Exclusion(reason, ids))
            log.warning("%s fit leaves out %d customer(s): %s (%s)", model, rows.size, reason,
                        found[-1].explain()["customers"])
    return tuple(found)


@attrs.frozen
class GammaGamma(_Parameters):
    """Spend per purchase: gamma around each customer's mean (shape p), whose rates are
    gamma across customers (q, gamma); independent of the purchase counts."""

    NAMES: ClassVar[tuple[str, ...]] = ("p", "q", "gamma")
    p: float
    q: float
    gamma: float
    log_likelihood: float = math.nan
    customers: int = 0
    excluded: tuple[Exclusion, ...] = ()
    """Repeat buyers left out of the fit (without positive repeat spend), named and counted."""
    log_covariance: Covariance | None = attrs.field(default=None, eq=False, repr=False)

    ZERO = "repeat purchases worth 0 in total (the model needs a positive mean spend)"
    NEGATIVE = "repeat purchases worth less than 0 in total (refunds exceed purchases)"

    @classmethod
    def fit(
        cls, frequency: ArrayLike, monetary: ArrayLike, start: Sequence[float] = (1.0, 1.0, 1.0),
        *, customer_ids: Sequence[str] | None = None,
    ) -> GammaGamma:
        """Fit on the customers with repeat purchases of positive mean value; repeat buyers
        without are counted and named in `excluded` and logged (customers without a repeat
        purchase have no repeat spend to describe and are not part of this model)."""
        import numpy as np

        require()
        x, m = _arrays(frequency, monetary)
        if customer_ids is not None and len(customer_ids) != x.size:
            raise ValidationError("customer_ids", len(customer_ids), f"needs one id per row ({x.size})")
        keep = (x > 0) & (m > 0)
        excluded = _excluded("Gamma-Gamma", [(cls.ZERO, (x > 0) & (m == 0)),
                                             (cls.NEGATIVE, (x > 0) & (m < 0))], customer_ids)
        if not np.any(keep):
            raise FitError("no customer has repeat purchases of positive value")
        (ux, um), weight = _compress(x[keep], m[keep])
        n = float(weight.sum())
        likelihood = _GgObjective(ux, um, weight)

        def objective(log_params: Array) -> tuple[float, Array]:
            ll, grad = likelihood(log_params)
            return -ll / n, -grad / n

        p, q, gamma = _maximise(objective, start, gradient=True)
        ll, _ = likelihood(np.log([p, q, gamma]))
        curvature = uncertainty.hessian_from_gradient(lambda v: likelihood(v)[1], np.log([p, q, gamma]))
        return cls(float(p), float(q), float(gamma), float(ll), int(n), excluded,
                   _information(-curvature))

    def expected_spend(self, frequency: ArrayLike, monetary: ArrayLike) -> Array:
        """Expected value of a customer's future purchase: the population mean shrunk
        towards their own mean as they buy more."""
        import numpy as np

        require()
        x, m = _arrays(frequency, monetary)
        m = np.where(x > 0, m, 0.0)
        return self.p * (self.gamma + x * m) / (self.p * x + self.q - 1)


class _GgObjective:
    """The weighted Gamma-Gamma log-likelihood and its gradient in log-params; what does not
    depend on the parameters is computed once, special functions once per distinct frequency."""

    def __init__(self, x: Array, m: Array, weight: Array) -> None:
        import numpy as np

        self.x, self.m, self.w = x, m, weight
        self.xs, self.xw = _levels(x, weight)
        self.n = float(self.xw.sum())
        self.wx = weight * x
        self.xm = x * m
        log_m, log_x = np.log(m), np.log(x)
        self.log_xm = log_m + log_x
        self.wx_log_xm = float(self.wx @ self.log_xm)
        self.w_log_m = float(weight @ log_m)
        self.xw_xs = self.xw * self.xs

    def __call__(self, log_params: Array) -> tuple[float, Array]:
        import numpy as np
        from scipy.special import digamma, gammaln

        p, q, gamma = np.exp(log_params)
        xs, xw, n, wx = self.xs, self.xw, self.n, self.wx
        pxs = p * xs
        tail = gamma + self.xm
        log_tail = np.log(tail)
        coefficient = p * wx + q * self.w
        ll = (xw @ (gammaln(pxs + q) - gammaln(pxs)) + n * (q * np.log(gamma) - gammaln(q))
              + p * self.wx_log_xm - self.w_log_m - coefficient @ log_tail)
        psi_pq = digamma(pxs + q)
        d_p = self.xw_xs @ (psi_pq - digamma(pxs)) + self.wx_log_xm - wx @ log_tail
        d_q = xw @ psi_pq + n * (np.log(gamma) - digamma(q)) - self.w @ log_tail
        d_gamma = n * q / gamma - coefficient @ (1.0 / tail)
        return float(ll), np.array([d_p, d_q, d_gamma]) * np.array([p, q, gamma])


def _gg_ll(log_params: Array, x: Array, m: Array, weight: Array) -> tuple[float, Array]:
    return _GgObjective(x, m, weight)(log_params)


def purchases_interval(
    model: BetaGeo | ParetoNBD, t: float, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike,
    level: float = 0.95,
) -> tuple[Array, Array, Array]:
    """Expected purchases in (T, T + t] of each history, with a `level` interval by the
    delta method (see `crmcore.scoring.uncertainty`): estimate, lower, upper."""
    import numpy as np

    t = arguments.number(t, "t")
    x, tx, age = _arrays(frequency, recency, T)
    if model.log_covariance is None:
        raise FitError("the model has no covariance (not fitted here, or a flat likelihood)")
    return uncertainty.delta_interval(
        lambda v: model.at(v).expected_purchases(t, x, tx, age), model.log_params(),
        np.asarray(model.log_covariance), level)


# ---- lifetime value ----


def _check_horizon(periods: int, period: float, discount: float) -> None:
    """The checks of `Horizon`, the period here in model units."""
    periods_of(periods)
    arguments.number(period, "period", low_open=True)
    discount_of(discount)


def lifetime_value(
    purchases: PurchaseModel,
    spend: GammaGamma,
    frequency: ArrayLike,
    recency: ArrayLike,
    T: ArrayLike,
    monetary: ArrayLike,
    *,
    periods: int = 12,
    period: float = 30 / 7,
    discount: float = 0.01,
) -> Array:
    """Discounted value of each customer's next `periods` periods of `period` time units:
    the expected purchases in each period times the expected spend, discounted at
    `discount` a period (the lifetimes package's definition)."""
    import numpy as np

    require()
    _check_horizon(periods, period, discount)
    x, tx, age, m = _arrays(frequency, recency, T, monetary)
    steps = np.arange(1, periods + 1, dtype=np.float64)
    _, discounted = purchases.forecast(list(steps * period), list((1.0 + discount) ** -steps), x, tx, age)
    return discounted * spend.expected_spend(x, m)


@attrs.frozen
class LifetimeModel:
    """A purchase-count model and a spend model fitted together, with the time unit and the
    currency they use, and the customers each fit left out."""

    purchases: BetaGeo | ParetoNBD
    spend: GammaGamma
    unit_days: float
    currency: str | None = None
    excluded: tuple[Exclusion, ...] = ()
    """Customers left out of both fits (see `NEGATIVE_TOTAL`); those the spend fit alone
    left out are in `spend.excluded`."""
    measure: str = "revenue"
    """What the spend model was fitted on: "revenue" or "margin" (the summary's measure)."""

    NEGATIVE_TOTAL: ClassVar[str] = "total spend below 0 (refunds exceed purchases)"

    @classmethod
    def fit(cls, summary: Summary, *, counts: str = "bg/nbd") -> LifetimeModel:
        """Fit both models on a summary; `counts` is "bg/nbd" or "pareto/nbd"."""

        kinds: dict[str, type[BetaGeo] | type[ParetoNBD]] = {"bg/nbd": BetaGeo, "pareto/nbd": ParetoNBD}
        if counts not in kinds:
            raise ValidationError("counts", counts, f"must be one of {sorted(kinds)}")
        require()
        x, tx, age, m, total = _columns(summary, "frequency", "recency", "T", "monetary", "total")
        negative = total < 0
        excluded = _excluded("lifetime value", [(cls.NEGATIVE_TOTAL, negative)], summary.customer_ids)
        keep = ~negative
        ids = [c for c, k in zip(summary.customer_ids, keep, strict=True) if k]
        purchases = kinds[counts].fit(x[keep], tx[keep], age[keep])
        spend = GammaGamma.fit(x[keep], m[keep], customer_ids=ids)
        return cls(purchases, spend, summary.period.unit_days, summary.currency, excluded,
                   summary.measure)

    def explain(self) -> dict[str, Any]:
        """What was fitted on what: parameters, customers, currency, and who was left out."""
        return {
            "purchases": type(self.purchases).__name__, "purchase_params": self.purchases.params,
            "spend_params": self.spend.params, "currency": self.currency, "measure": self.measure,
            "customers": self.purchases.customers, "spend_customers": self.spend.customers,
            "excluded": [e.explain() for e in (*self.excluded, *self.spend.excluded)],
        }

    def value(
        self, summary: Summary, *, horizon: Horizon | None = None, level: float | None = None,
    ) -> Valuation:
        """P(alive), expected purchases, expected spend and discounted CLV of every customer
        over `horizon` (default: 12 calendar months at 1% a month); with `level`, delta-method
        intervals on expected purchases and CLV."""
        import numpy as np

        horizon = horizon or Horizon()
        if summary.period.unit_days != self.unit_days:
            raise ValidationError("summary", summary.period.unit_days,
                                  f"is in units of {summary.period.unit_days} days, "
                                  f"the model in units of {self.unit_days}")
        if summary.currency is not None and self.currency is not None and summary.currency != self.currency:
            raise ValidationError("summary", summary.currency,
                                  f"is in {summary.currency}, the model in {self.currency}")
        if summary.measure != self.measure:  # a margin model never values revenue, nor back
            raise ValidationError("summary", summary.measure,
                                  f"measures {summary.measure}, the model {self.measure}")
        x, tx, age, m = _columns(summary, "frequency", "recency", "T", "monetary")
        ends, weights = horizon.ends(summary.period.through, self.unit_days), horizon.weights()

        def forecast(purchases: PurchaseModel, spend: GammaGamma) -> tuple[Array, Array, Array]:
            total, discounted = purchases.forecast(ends, weights, x, tx, age)
            expected = spend.expected_spend(x, m)
            return total, expected, discounted * expected

        total, spend, clv = forecast(self.purchases, self.spend)
        if not np.all(np.isfinite(clv)):  # a fit stopped on a ridge: no figure is better than NaN
            row = int(np.argmax(~np.isfinite(clv)))
            raise FitError(f"{NO_MAXIMUM}: the fitted models give no finite value for customer "
                           f"{summary.customer_ids[row]!r} (parameters {self.purchases.params}, "
                           f"{self.spend.params})")
        valuation = Valuation(
            customer_ids=summary.customer_ids, p_alive=self.purchases.p_alive(x, tx, age),
            expected_purchases=total, expected_spend=spend, clv=clv, horizon=horizon,
            currency=summary.currency or self.currency, measure=self.measure,
        )
        if level is None:
            return valuation
        covariance = self._covariance()
        k = len(self.purchases.NAMES)
        at = np.concatenate([self.purchases.log_params(), self.spend.log_params()])

        def varied(index: int) -> Callable[[Array], Array]:
            def predict(v: Array) -> Array:
                return forecast(self.purchases.at(v[:k]), self.spend.at(v[k:]))[index]
            return predict

        _, low_n, high_n = uncertainty.delta_interval(varied(0), at, covariance, level)
        _, low_v, high_v = uncertainty.delta_interval(varied(2), at, covariance, level)
        return attrs.evolve(valuation, level=level, purchases_interval=(low_n, high_n),
                            clv_interval=(low_v, high_v))

    def _covariance(self) -> Array:
        """Both fits' covariances side by side (the fits are independent)."""
        import numpy as np

        parts = (self.purchases.log_covariance, self.spend.log_covariance)
        if any(c is None for c in parts):
            raise FitError("the likelihood is flat at the optimum: no interval can be given")
        a, b = (np.asarray(c) for c in parts)
        out = np.zeros((a.shape[0] + b.shape[0],) * 2)
        out[:a.shape[0], :a.shape[0]], out[a.shape[0]:, a.shape[0]:] = a, b
        return out


def _columns(summary: Summary, *names: str) -> list[Array]:
    import numpy as np

    return [np.frombuffer(getattr(summary, name), dtype=np.float64) if len(summary) else np.zeros(0)
            for name in names]


@attrs.frozen(eq=False)
class Valuation:
    """Columns, one row per customer, in the summary's order; the horizon and the currency
    say what the figures mean."""

    customer_ids: list[str]
    p_alive: Array
    expected_purchases: Array
    """Over the whole horizon."""
    expected_spend: Array
    clv: Array
    horizon: Horizon = attrs.field(factory=Horizon)
    currency: str | None = None
    level: float | None = None
    """Confidence level of the intervals (delta method), when asked for."""
    purchases_interval: tuple[Array, Array] | None = None
    clv_interval: tuple[Array, Array] | None = None
    measure: str = "revenue"
    """What spend and CLV measure: "revenue" or "margin"."""

    def __len__(self) -> int:
        return len(self.customer_ids)

    def explain(self, index: int) -> dict[str, str | int | float]:
        found: dict[str, str | int | float] = {
            "p_alive": float(self.p_alive[index]),
            "expected_purchases": float(self.expected_purchases[index]),
            "expected_spend": float(self.expected_spend[index]),
            "horizon": self.horizon.describe(),
        }
        if self.currency is not None:
            found["currency"] = self.currency
        if self.measure != "revenue":
            found["measure"] = self.measure
        if self.clv_interval is not None and self.level is not None:
            found["clv_lower"], found["clv_upper"] = (float(b[index]) for b in self.clv_interval)
        return found

    def as_dict(self) -> dict[str, float]:
        return dict(zip(self.customer_ids, map(float, self.clv), strict=True))
