"""The public API type-checks under mypy (py.typed ships with the package)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PUBLIC = ["siftopt/__init__.py", "siftopt/api.py", "siftopt/result.py",
          "siftopt/model/decision.py", "siftopt/policies/interface.py", "siftopt/modeling.py",
          "siftopt/registry.py"]


def test_public_api_is_clean_under_mypy(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--ignore-missing-imports", "--follow-imports=silent",
         "--cache-dir", str(tmp_path / "cache"), *PUBLIC],
        cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Success" in done.stdout
