"""Hypothesis settings for the example's tests: no deadline (DuckDB's first queries compile)."""

from hypothesis import HealthCheck, settings

settings.register_profile("crmcore-duckdb", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("crmcore-duckdb")
