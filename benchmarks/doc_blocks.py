"""Run the Python code blocks of a Markdown document, in order, in one namespace.

Usage (from the repository root):

    python benchmarks/doc_blocks.py docs/api.md

Every fenced ```python block runs as written (the same way tests/test_docs_api.py runs them);
what the blocks print is the output, so a number the document quotes from a printed line can be
re-checked (benchmarks/reproduce.py). Exits non-zero when a block raises.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

BLOCK = re.compile(r"```python\n(.*?)```", flags=re.S)


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        sys.exit("usage: python benchmarks/doc_blocks.py DOCUMENT.md")
    path = Path(argv[0])
    namespace: dict = {"__name__": "doc_blocks"}
    for block in BLOCK.findall(path.read_text(encoding="utf-8")):
        exec(compile(block, str(path), "exec"), namespace)  # noqa: S102


if __name__ == "__main__":
    main(sys.argv[1:])
