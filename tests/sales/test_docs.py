"""docs/sales.md runs as written."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).parents[2] / "docs" / "sales.md"


def test_sales_doc_examples_run() -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) >= 7
    namespace: dict[str, object] = {"__name__": "sales_doc"}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)
