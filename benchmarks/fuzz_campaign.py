"""Fuzz campaign: seeded mutations of valid input files, run through the command line.

Usage (from the repository root):

    python benchmarks/fuzz_campaign.py                          # 300 per reader, seed 0
    python benchmarks/fuzz_campaign.py --per-reader 1000 --seed 7 --readers instance,npz
    python benchmarks/fuzz_campaign.py --show 5                 # list 5 bad outcomes per reader

Each mutation writes a mutated copy of a valid file into a scratch folder and runs one
``siftopt`` command on it through :func:`siftopt.cli.main`, in this process:

========  ==================================================  ==========================
reader    valid files mutated                                 command
========  ==================================================  ==========================
instance  instances/example-*.json                            inspect, then solve topk
npz       instances/prefill-fixed.npz (+ forged headers, and  inspect, then solve topk
          the ``arrays`` name pointed outside the folder)
solution  ``solve --method highs --out`` of each example      evaluate
bench     benchmarks/quick.toml, paper.toml                   bench (runner stubbed: the
                                                              sweep itself is not run)
generate  three option sets of ``siftopt generate``           generate
profile   solvers/*.toml                                      solve highs / cpsat (L = 4)
weights   small relu, swiglu and gelu-with-biases weights     similarity
========  ==================================================  ==========================

Mutations (:mod:`siftopt.io.fuzz`): 1–3 per file of a value replaced by an extreme number,
NaN or infinity, a wrong type, a hostile file name, a resized list, or deleted; for ``.npz``
files an array's element, scale, dtype or shape; and for one file in ten the bytes themselves
(truncated, a flipped bit, invalid UTF-8, nesting 100 000 deep, empty).

To measure an older commit: ``git worktree add /tmp/old COMMIT``, copy
``siftopt/io/fuzz.py`` into it if it lacks one, and run
``PYTHONPATH=/tmp/old python benchmarks/fuzz_campaign.py --files-from /tmp/old``.

Outcomes: ``result`` (exit 0), ``rejected`` (exit 2, one line on stderr), ``internal``
(exit 1: an internal error), ``other`` (any other status, a multi-line rejection or a
time-out) and ``escaped`` (a file outside the named file's folder was read and the run
succeeded; such runs are counted here and not as results). The last column is the time.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from siftopt.cli import main
from siftopt.io import fuzz

ROOT = Path(__file__).resolve().parent.parent
INSTANCES = ROOT / "instances"
EXAMPLES = ("example-decode-adaptive.json", "example-decode-rayleigh.json",
            "example-prefill-fixed.json")
SIDECAR = "prefill-fixed.npz"
READERS = ("instance", "npz", "solution", "bench", "generate", "profile", "weights")
#: Seconds one command may take before it counts as ``other`` (a hang).
TIMEOUT_S = 30


class TimedOut(BaseException):  # noqa: N818 - not an error the CLI may catch and report
    """Raised by the alarm; a BaseException so that the CLI's last line of defence passes it."""


@dataclass
class Tally:
    """Outcomes of one reader's mutations."""

    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0

    def add(self, outcome: str, note: str) -> None:
        self.counts[outcome] += 1
        self.examples.setdefault(outcome, []).append(note)


@contextlib.contextmanager
def _alarm(seconds: int) -> Iterator[None]:
    def ring(signum: int, frame: Any) -> None:
        raise TimedOut

    previous = signal.signal(signal.SIGALRM, ring)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def run_cli(argv: list[str]) -> tuple[str, str]:
    """Run one command; returns (outcome, first line of stderr)."""
    out, err = io.StringIO(), io.StringIO()
    try:
        with _alarm(TIMEOUT_S), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main(argv)
    except TimedOut:
        return "other", f"timed out after {TIMEOUT_S} s"
    text = err.getvalue().strip()
    lines = text.splitlines()
    first = next((ln for ln in lines if ln.startswith("siftopt:")), lines[0] if lines else "")
    if status == 0:
        return "result", first
    if status == 2:
        return ("rejected", first) if text.count("\n") == 0 else ("other", f"multi-line: {text}")
    if status == 1:
        return "internal", first
    return "other", f"exit {status}: {first}"


def run_commands(commands: list[list[str]]) -> tuple[str, str]:
    """The first outcome that is not a result, else ``result``."""
    line = ""
    for argv in commands:
        outcome, line = run_cli(argv)
        if outcome != "result":
            return outcome, line
    return "result", line


# --------------------------------------------------------------------------------------------
# Readers: each returns (commands to run, note, whether success means a file escaped)
# --------------------------------------------------------------------------------------------

Case = tuple[list[list[str]], str, bool]


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _write_mutated_json(rng: random.Random, doc: Any, target: Path, original: bytes,
                        names: tuple[str, ...] = ()) -> str:
    if rng.random() < 0.1:
        data, note = fuzz.mutate_bytes(original, rng)
        target.write_bytes(data)
        return note
    mutated, notes = fuzz.mutate_document(doc, rng, names=names)
    target.write_text(fuzz.dump_json(mutated), encoding="utf-8")
    return "; ".join(notes)


def _instance_commands(path: Path) -> list[list[str]]:
    return [["inspect", str(path), "--format", "json"],
            ["solve", str(path), "--method", "topk", "--format", "json"]]


def instance_case(rng: random.Random, work: Path) -> Case:
    name = rng.choice(EXAMPLES)
    source = INSTANCES / name
    (work / SIDECAR).write_bytes((INSTANCES / SIDECAR).read_bytes())
    target = work / name
    note = _write_mutated_json(rng, _json(source), target, source.read_bytes())
    return _instance_commands(target), f"{name}: {note}", False


def _outside_copy(work: Path) -> Path:
    """A valid copy of the sidecar outside the instance's folder."""
    outside = work.parent / "outside"
    outside.mkdir(exist_ok=True)
    copy = outside / SIDECAR
    copy.write_bytes((INSTANCES / SIDECAR).read_bytes())
    return copy


def npz_case(rng: random.Random, work: Path) -> Case:
    name = "example-prefill-fixed.json"
    doc = _json(INSTANCES / name)
    arrays = dict(np.load(INSTANCES / SIDECAR))
    target = work / name
    roll = rng.random()
    escaped = False
    if roll < 0.1:  # the sidecar named outside the folder (a valid file is there)
        outside = _outside_copy(work)
        link = work / "link.npz"
        link.unlink(missing_ok=True)
        link.symlink_to(outside)
        doc["arrays"] = rng.choice((str(outside), f"../outside/{SIDECAR}", "link.npz",
                                    str(work / SIDECAR)))
        (work / SIDECAR).write_bytes((INSTANCES / SIDECAR).read_bytes())
        note = f"arrays = {doc['arrays']!r}"
        escaped = True
    elif roll < 0.2:  # a forged header: a huge or wrong declared shape over a few bytes
        key = rng.choice(sorted(arrays))
        shape = rng.choice(fuzz.FORGED_SHAPES)
        (work / SIDECAR).write_bytes(fuzz.forged_npz(arrays, key, shape))
        note = f"{key} header declares shape {shape}"
    elif roll < 0.3:
        data, note = fuzz.mutate_bytes((INSTANCES / SIDECAR).read_bytes(), rng)
        (work / SIDECAR).write_bytes(data)
        note = f"npz {note}"
    else:
        mutated, notes = fuzz.mutate_arrays(arrays, rng)
        fuzz.save_arrays(work / SIDECAR, mutated)
        note = "; ".join(notes)
    target.write_text(json.dumps(doc), encoding="utf-8")
    return _instance_commands(target), note, escaped


_SOLUTIONS: dict[str, Any] = {}


def solution_case(rng: random.Random, work: Path) -> Case:
    name = rng.choice(EXAMPLES)
    (work / SIDECAR).write_bytes((INSTANCES / SIDECAR).read_bytes())
    instance = work / name
    instance.write_bytes((INSTANCES / name).read_bytes())
    if name not in _SOLUTIONS:
        out = work / "valid-solution.json"
        outcome, line = run_cli(["solve", str(instance), "--method", "highs", "--out", str(out),
                                 "--format", "json"])
        if outcome != "result":
            raise SystemExit(f"cannot make a valid solution of {name}: {line}")
        _SOLUTIONS[name] = _json(out)
    solution = work / "solution.json"
    original = json.dumps(_SOLUTIONS[name]).encode()
    note = _write_mutated_json(rng, _SOLUTIONS[name], solution, original)
    return [["evaluate", str(instance), str(solution), "--format", "json"]], \
        f"{name}: {note}", False


def _write_mutated_toml(rng: random.Random, source: Path, target: Path,
                        names: tuple[str, ...]) -> str:
    import tomllib

    if rng.random() < 0.1:
        data, note = fuzz.mutate_bytes(source.read_bytes(), rng)
        target.write_bytes(data)
        return note
    doc = tomllib.loads(source.read_text(encoding="utf-8"))
    mutated, notes = fuzz.mutate_document(doc, rng, syntax="TOML", names=names)
    target.write_text(fuzz.dump_toml(mutated), encoding="utf-8")
    return "; ".join(notes)


def bench_case(rng: random.Random, work: Path) -> Case:
    source = ROOT / "benchmarks" / rng.choice(("quick.toml", "paper.toml"))
    target = work / "bench.toml"
    profile = str(ROOT / "solvers" / "quick.toml")
    escaped = False
    if rng.random() < 0.1:  # a profile named outside the configuration's folder
        import tomllib

        doc = tomllib.loads(source.read_text(encoding="utf-8"))
        doc["profile"] = rng.choice((profile, "../" * 8 + profile.lstrip("/")))
        target.write_text(fuzz.dump_toml(doc), encoding="utf-8")
        note = f"profile = {doc['profile']!r}"
        escaped = True
    else:
        note = _write_mutated_toml(rng, source, target, (profile, "quick", "default"))
    return [["bench", str(target), "--out", str(work / "bench-out"), "--quiet"]], \
        f"{source.name}: {note}", escaped


GENERATE_BASES: tuple[dict[str, str], ...] = (
    {"--preset": "mixtral-8x7b", "--tokens": "4", "--nodes": "3"},
    {"--preset": "qwen3-30b-a3b", "--tokens": "1", "--nodes": "4", "--fading": "rayleigh",
     "--outage-max": "0.1", "--power-control": "fixed"},
    {"--preset": "deepseek-moe-16b", "--tokens": "8", "--nodes": "2", "--budget": "both",
     "--latency-s": "0.05", "--max-candidates": "3", "--similarity": "0.9"},
)
GENERATE_OPTIONS = ("--preset", "--scenario", "--tokens", "--nodes", "--fading",
                    "--power-control", "--count", "--seed", "--accuracy", "--budget",
                    "--latency-scale", "--latency-s", "--similarity", "--placement",
                    "--router-entropy", "--token-correlation", "--outage-max",
                    "--max-candidates", "--bits-per-element")
GENERATE_VALUES = ("0", "-1", "1", "2", "0.5", "1e308", "-1e308", "1e-320", "nan", "inf", "-inf",
                   "1" + "0" * 30, "abc", "", "4096", "4097", "64", "65", "1.5", "0.999999",
                   "1e-9", "rayleigh", "urban", "mixtral-8x7b")


def generate_case(rng: random.Random, work: Path) -> Case:
    options = dict(rng.choice(GENERATE_BASES))
    notes = []
    for _ in range(rng.randint(1, 3)):
        option = rng.choice(GENERATE_OPTIONS)
        if option in options and option != "--preset" and rng.random() < 0.2:
            del options[option]
            notes.append(f"without {option}")
        else:
            options[option] = rng.choice(GENERATE_VALUES)
            notes.append(f"{option} {options[option]!r}")
    argv = ["generate", "--out", str(work / "generated")]
    argv += [f"{option}={value}" for option, value in options.items()]
    return [argv], "; ".join(notes), False


def profile_case(rng: random.Random, work: Path) -> Case:
    source = ROOT / "solvers" / rng.choice(("default.toml", "quick.toml", "parallel.toml"))
    target = work / "profile.toml"
    note = _write_mutated_toml(rng, source, target, ())
    instance = work / "example-prefill-fixed.json"
    instance.write_bytes((INSTANCES / "example-prefill-fixed.json").read_bytes())
    (work / SIDECAR).write_bytes((INSTANCES / SIDECAR).read_bytes())
    method = rng.choice(("highs", "cpsat"))
    return [["solve", str(instance), "--method", method, "--profile", str(target),
             "--format", "json"]], f"{source.name} ({method}): {note}", False


def _weights() -> dict[str, tuple[dict[str, np.ndarray], list[str]]]:
    rng = np.random.default_rng(0)
    n, h, d = 4, 8, 6

    def w(*shape: int) -> np.ndarray:
        return rng.normal(size=shape) / np.sqrt(shape[-1])

    return {
        "relu": ({"w1": w(n, h, d), "w2": w(n, d, h)}, ["--kind", "relu"]),
        "swiglu": ({"w1": w(n, h, d), "w2": w(n, d, h), "w3": w(n, h, d)},
                   ["--kind", "swiglu", "--radius", "2.0"]),
        "gelu-biases": ({"w1": w(n, h, d), "w2": w(n, d, h), "b1": w(n, h), "b2": w(n, d)},
                        ["--kind", "gelu", "--min-radius", "0.5"]),
    }


def weights_case(rng: random.Random, work: Path) -> Case:
    name, (arrays, options) = rng.choice(sorted(_weights().items()))
    target = work / "weights.npz"
    roll = rng.random()
    if roll < 0.1:
        key = rng.choice(sorted(arrays))
        shape = rng.choice(fuzz.FORGED_SHAPES)
        target.write_bytes(fuzz.forged_npz(arrays, key, shape))
        note = f"{key} header declares shape {shape}"
    elif roll < 0.2:
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        data, note = fuzz.mutate_bytes(buffer.getvalue(), rng)
        target.write_bytes(data)
    else:
        mutated, notes = fuzz.mutate_arrays(arrays, rng)
        fuzz.save_arrays(target, mutated)
        note = "; ".join(notes)
    return [["similarity", str(target), *options, "--out", str(work / "bounds.json")]], \
        f"{name}: {note}", False


CASES: dict[str, Callable[[random.Random, Path], Case]] = {
    "instance": instance_case, "npz": npz_case, "solution": solution_case,
    "bench": bench_case, "generate": generate_case, "profile": profile_case,
    "weights": weights_case,
}


@contextlib.contextmanager
def _stub_bench_runner() -> Iterator[None]:
    """``siftopt bench`` reads and checks its configuration, then finds no results."""
    import pandas as pd

    from siftopt.experiments.bench import runner

    original = runner.run_bench
    runner.run_bench = lambda *args, **kwargs: {"frame": pd.DataFrame()}  # type: ignore
    try:
        yield
    finally:
        runner.run_bench = original


def campaign(readers: list[str], per_reader: int, seed: int) -> dict[str, Tally]:
    tallies: dict[str, Tally] = {}
    with tempfile.TemporaryDirectory(prefix="siftopt-fuzz-") as scratch, _stub_bench_runner():
        for reader in readers:
            tally = tallies[reader] = Tally()
            started = time.perf_counter()
            for k in range(per_reader):
                rng = random.Random(f"{seed}:{reader}:{k}")
                work = Path(scratch) / reader / f"case{k}"
                work.mkdir(parents=True)
                commands, note, escape = CASES[reader](rng, work)
                outcome, line = run_commands(commands)
                if escape and outcome == "result":
                    outcome = "escaped"
                tally.add(outcome, f"[{k}] {note} -> {line}")
            tally.seconds = time.perf_counter() - started
    return tallies


def table(tallies: dict[str, Tally]) -> str:
    columns = ("result", "rejected", "internal", "other", "escaped")
    header = ["reader", "mutations", "result (0)", "rejected (2)", "internal error (1)",
              "other", "escaped", "time_s"]
    rows = []
    for reader, tally in tallies.items():
        total = sum(tally.counts.values())
        rows.append([reader, str(total), *(str(tally.counts[c]) for c in columns),
                     f"{tally.seconds:.1f}"])
    totals = [sum(int(r[i]) for r in rows) for i in range(1, 7)]
    seconds = sum(t.seconds for t in tallies.values())
    rows.append(["all", *(str(t) for t in totals), f"{seconds:.1f}"])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"
              for r in rows]
    return "\n".join(lines)


def main_(argv: list[str] | None = None) -> int:
    global ROOT, INSTANCES
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-reader", type=int, default=300, metavar="N",
                        help="mutations per reader (default 300)")
    parser.add_argument("--seed", type=int, default=0, help="campaign seed (default 0)")
    parser.add_argument("--readers", default=",".join(READERS),
                        help=f"comma-separated subset of {','.join(READERS)}")
    parser.add_argument("--show", type=int, default=3, metavar="K",
                        help="list up to K internal/other/escaped outcomes per reader")
    parser.add_argument("--files-from", default=str(ROOT), metavar="DIR",
                        help="checkout whose instances/, benchmarks/ and solvers/ hold the valid "
                        "files (default: this one; give an older checkout's to measure it)")
    args = parser.parse_args(argv)
    ROOT = Path(args.files_from).resolve()
    INSTANCES = ROOT / "instances"
    readers = [r.strip() for r in args.readers.split(",") if r.strip()]
    unknown = [r for r in readers if r not in CASES]
    if unknown:
        parser.error(f"unknown reader(s) {unknown}; known: {', '.join(READERS)}")
    os.environ.pop("SIFTOPT_DEBUG", None)
    tallies = campaign(readers, args.per_reader, args.seed)
    print(f"fuzz campaign: {args.per_reader} mutations per reader, seed {args.seed}")
    print(table(tallies))
    for reader, tally in tallies.items():
        for outcome in ("internal", "other", "escaped"):
            for line in tally.examples.get(outcome, [])[: args.show]:
                print(f"{reader} {outcome}: {line}")
    bad = sum(t.counts[o] for t in tallies.values() for o in ("internal", "other", "escaped"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main_())
