"""The README's tour runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).parents[1] / "README.md"


def test_readme_tour_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) >= 5
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "readme"}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)


def test_readme_opens_with_the_two_commands() -> None:
    commands = re.search(r"```sh\n(.*?)```", README.read_text(), re.S)
    assert commands is not None
    lines = [line.split("#")[0].strip() for line in commands.group(1).strip().splitlines()]
    assert lines == ["bash scripts/demo.sh", "bash scripts/test.sh"]
