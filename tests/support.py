"""Helpers shared by the test suite."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def unavailable(reason: str) -> NoReturn:
    """Skip on a developer's machine; fail under CI=true, so a green CI means it ran."""
    if in_ci():
        pytest.fail(f"required backend unavailable under CI: {reason}", pytrace=False)
    pytest.skip(reason)
