"""The statistics of a holdout test, in the standard library only (no numpy needed).

- Rates: Wilson score interval per group; the difference (target - control) by
  Newcombe's hybrid score interval (his method 10: Wilson limits combined, good
  coverage even for rare responses where Wald fails); its p-value by the pooled
  two-proportion z-test; the relative lift (ratio of rates) by the log (Katz) interval.
- Revenue per member: spend is skewed (most members spend nothing, a few a lot),
  so no normal model of spend is assumed: the difference of means gets Welch's
  unequal-variance t interval, which needs only each group's count, sum and sum of
  squares (computable in SQL) and leans on the central limit theorem for the means.
  `RevenueLift.reliable` is False while a group has fewer than 30 buyers, where
  that approximation is too rough for heavy-tailed spend.
- Power: members per group needed to detect an absolute lift, two-sided test.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import attrs

from crmcore.errors import ValidationError

_NORMAL = NormalDist()


def z(probability: float) -> float:
    return _NORMAL.inv_cdf(probability)


def wilson(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion (0..1 when n is 0)."""
    if n == 0:
        return 0.0, 1.0
    q = z(1 - (1 - confidence) / 2)
    p = successes / n
    centre = (p + q * q / (2 * n)) / (1 + q * q / n)
    half = q * math.sqrt(p * (1 - p) / n + q * q / (4 * n * n)) / (1 + q * q / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe(x1: int, n1: int, x2: int, n2: int, confidence: float = 0.95) -> tuple[float, float]:
    """Newcombe's hybrid score interval for p1 - p2 (method 10)."""
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson(x1, n1, confidence)
    l2, u2 = wilson(x2, n2, confidence)
    d = p1 - p2
    low = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return low, high


def two_proportion_p(x1: int, n1: int, x2: int, n2: int) -> float:
    """Two-sided p-value of the pooled z-test of p1 = p2."""
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0
    statistic = (x1 / n1 - x2 / n2) / se
    return 2 * (1 - _NORMAL.cdf(abs(statistic)))


def ratio_interval(
    x1: int, n1: int, x2: int, n2: int, confidence: float = 0.95
) -> tuple[float, float] | None:
    """Log (Katz) interval for p1 / p2; None when either count is zero (undefined)."""
    if x1 == 0 or x2 == 0:
        return None
    ratio = (x1 / n1) / (x2 / n2)
    se = math.sqrt(1 / x1 - 1 / n1 + 1 / x2 - 1 / n2)
    q = z(1 - (1 - confidence) / 2)
    return ratio * math.exp(-q * se), ratio * math.exp(q * se)


def t_cdf(t: float, df: float) -> float:
    """Student's t distribution function, via the regularised incomplete beta function."""
    if math.isinf(df):
        return _NORMAL.cdf(t)
    square = t * t
    if square < df:  # near the centre: the central mass, with no cancellation
        central = _betainc(0.5, df / 2, square / (df + square))
        return 0.5 + (0.5 * central if t > 0 else -0.5 * central)
    tail = 0.5 * _betainc(df / 2, 0.5, df / (df + square))
    return 1 - tail if t > 0 else tail


def t_quantile(probability: float, df: float) -> float:
    """Inverse of `t_cdf`: Newton's method from the normal quantile (a few steps suffice),
    falling back to bisection should a step ever leave the bracket."""
    if df > 1e7:
        return z(probability)
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    low, high = -1e4, 1e4
    x = z(probability)
    for _ in range(100):
        error = t_cdf(x, df) - probability
        if error < 0:
            low = x
        else:
            high = x
        density = math.exp(log_norm - (df + 1) / 2 * math.log1p(x * x / df))
        step = error / density if density > 0 else math.inf
        following = x - step
        if not low < following < high:
            following = (low + high) / 2
        if abs(following - x) < 1e-12 * max(1.0, abs(x)):
            return following
        x = following
    return x


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b) by Lentz's continued fraction (Numerical Recipes)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x > (a + 1) / (a + b + 2):
        return 1 - _betainc(b, a, 1 - x)
    tiny = 1e-300
    c, d = 1.0, 1 - (a + b) * x / (a + 1)
    d = 1 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 500):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1 + numerator * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1) < 1e-15:
            break
    return front * result / a


@attrs.frozen
class Moments:
    """Count, sum and sum of squares of a per-member value (what SQL aggregates give)."""

    n: int
    total: float
    squares: float

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else 0.0

    @property
    def variance(self) -> float:
        if self.n < 2:
            return 0.0
        return max(0.0, (self.squares - self.total * self.total / self.n) / (self.n - 1))


def welch(target: Moments, control: Moments, confidence: float = 0.95) -> tuple[float, float, float, float]:
    """(difference of means, low, high, two-sided p) by Welch's t with Satterthwaite's df."""
    difference = target.mean - control.mean
    a, b = target.variance / target.n, control.variance / control.n
    se = math.sqrt(a + b)
    if se == 0:
        return difference, difference, difference, 1.0 if difference == 0 else 0.0
    df = (a + b) ** 2 / (
        (a * a / (target.n - 1) if target.n > 1 else 0) + (b * b / (control.n - 1) if control.n > 1 else 0)
    )
    q = t_quantile(1 - (1 - confidence) / 2, df)
    p = 2 * (1 - t_cdf(abs(difference) / se, df))
    return difference, difference - q * se, difference + q * se, p


@attrs.frozen
class SampleSize:
    """Members needed per group to detect `lift` over `baseline` with the given test."""

    control: int
    target: int
    baseline: float
    lift: float
    alpha: float
    power: float
    control_fraction: float

    @property
    def total(self) -> int:
        return self.control + self.target

    def explain(self) -> str:
        return (
            f"to detect a lift of {self.lift:.2%} over a {self.baseline:.2%} baseline "
            f"(two-sided alpha {self.alpha}, power {self.power}) with {self.control_fraction:.0%} held out, "
            f"the campaign needs {self.control} control and {self.target} target members "
            f"({self.total} in all)"
        )


def sample_size(
    baseline: float, lift: float, *, control_fraction: float, alpha: float = 0.05, power: float = 0.8
) -> SampleSize:
    """Per-group sizes for the two-proportion z-test (normal approximation, unequal groups).

    With k = target/control, n_control = (z_a sqrt(p(1-p)(1+1/k)) + z_b sqrt(pc qc + pt qt / k))^2 / d^2,
    p being the pooled rate under no effect.
    """
    if not 0 < control_fraction <= 0.5:
        raise ValidationError("control_fraction", control_fraction, "must be above 0 and at most 0.5")
    if not (0 < baseline < 1 and lift > 0 and baseline + lift < 1):
        raise ValidationError("lift", lift, "baseline and baseline + lift must be rates between 0 and 1")
    k = (1 - control_fraction) / control_fraction
    pc, pt = baseline, baseline + lift
    pooled = (pc + k * pt) / (1 + k)
    za, zb = z(1 - alpha / 2), z(power)
    root = za * math.sqrt(pooled * (1 - pooled) * (1 + 1 / k)) + zb * math.sqrt(
        pc * (1 - pc) + pt * (1 - pt) / k
    )
    control = math.ceil(root * root / (lift * lift))
    return SampleSize(control, math.ceil(control * k), baseline, lift, alpha, power, control_fraction)
