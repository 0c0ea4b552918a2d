"""benchmarks/certificate.py (docs/performance.md, "A second certificate at scale") still runs
and writes the rows it documents. Tiny sizes only: no timing is checked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_certificate_script_writes_agreeing_rows(tmp_path) -> None:
    out = tmp_path / "certificate.json"
    done = subprocess.run([sys.executable, "benchmarks/certificate.py", "--lengths", "8,32",
                           "--nodes", "3", "--power", "fixed,adaptive", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.read_text())
    assert len(rows) == 4
    for row in rows:
        assert row["agree"] == "yes", row
        assert row["status"] == row["highs_status"]
        assert {"energy_j", "bound_j", "seconds", "highs_energy_j"} <= set(row)
    assert "| 32 | 3 | adaptive |" in done.stdout
