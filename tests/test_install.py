"""A non-editable install works from outside the source tree (issue 12's "done when").

Builds a wheel, installs it into a fresh virtual environment (which borrows the test
environment's dependencies), and from an empty directory runs the Python API and the CLI with
a shipped solver profile.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PREFILL = ROOT / "instances" / "prefill-adaptive-caps.json"

SCRIPT = """
import json, sys
import numpy as np
import siftopt

assert siftopt.__file__.startswith(sys.prefix), siftopt.__file__  # the installed copy
inst = siftopt.load(sys.argv[1])
res = siftopt.solve(inst, method="highs", time_limit=10, profile="parallel")
assert res.status == siftopt.Status.OPTIMAL and res.gap == 0.0
frame = res.decision.to_frame()
assert set(frame["action"]) <= {"keep", "replace", "skip"}
assert siftopt.evaluate(inst, res.decision).energy_j == res.energy_j
assert res.to_dict()["status"] == "optimal"

@siftopt.policy("keep-local")
def keep_local(view):
    return view.decision(np.where(view.placement[view.topk_experts] == 0,
                                  view.topk_experts, -1))

rows = siftopt.verify([sys.argv[1]], methods=["keep-local", "sift-decode"], exact="highs")
assert set(rows["method"]) == {"keep-local", "sift-decode"}
assert len(siftopt.generate("mixtral-8x7b", tokens=4, seed=3)) == 1
print(json.dumps({"energy_j": res.energy_j, "rows": len(rows)}))
"""


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("install")
    wheels = base / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                    "--disable-pip-version-check", "-w", str(wheels), str(ROOT)], check=True)
    env_dir = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(env_dir)],
                   check=True)
    python = env_dir / "bin" / "python"
    wheel = next(wheels.glob("siftopt-*.whl"))
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "-q",
                    "--disable-pip-version-check", str(wheel)], check=True)
    return env_dir


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)


def test_api_from_outside_the_source_tree(venv: Path, tmp_path: Path) -> None:
    script = tmp_path / "use_siftopt.py"
    script.write_text(SCRIPT, encoding="utf-8")
    done = _run([str(venv / "bin" / "python"), str(script), str(PREFILL)], tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["rows"] == 2


@pytest.mark.parametrize("profile", ["default", "parallel", "quick"])
def test_cli_finds_the_shipped_profiles_anywhere(venv: Path, tmp_path: Path, profile) -> None:
    done = _run([str(venv / "bin" / "siftopt"), "solve", str(PREFILL), "--profile", profile,
                 "--format", "json"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] in ("optimal", "feasible")
