"""docs/marketing.md: its example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).parents[2] / "docs" / "marketing.md"


def test_the_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    [block] = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    exec(compile(block, str(DOC), "exec"), {"__name__": "marketing_doc"})
    printed = capsys.readouterr().out
    assert "launched" in printed and "Newcombe" in printed and "per incremental conversion" in printed
