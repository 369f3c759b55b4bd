"""Hypothesis profiles: developers explore new random examples on every run; CI replays a
fixed, derandomized sequence, so a landing is judged on the same examples every time."""

from hypothesis import HealthCheck, settings

from tests.support import in_ci

settings.register_profile(
    "crmcore", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.register_profile("ci", parent=settings.get_profile("crmcore"), derandomize=True)
settings.load_profile("ci" if in_ci() else "crmcore")
