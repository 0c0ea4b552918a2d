"""Verification of policies against the exact optimum (``siftopt verify``).

For every instance, solve it exactly once, run each method, and compare: one :class:`Row` per
instance × method, then a summary per method. Every energy comes from the shared evaluator
(through :func:`siftopt.facade.solve_exact` and :func:`siftopt.facade.solve_policy`).

Verdicts of a row (``verdict``):

* ``optimal`` — feasible, and its energy equals the proven optimum (docs/model.md §3.4);
* ``suboptimal`` — feasible, above the optimum (a **counterexample**);
* ``infeasible`` — the method's actions violate a constraint although the instance is feasible;
* ``refused`` — the method declined the instance (:class:`~siftopt.errors.PolicyRefusal`);
* ``both_infeasible`` — the instance is proved infeasible and so are the method's actions;
* ``unverified`` — the exact solve ended without a proven optimum (time limit, error);
* ``below_optimum`` / ``exact_says_infeasible`` — the method beats the "optimum" or is feasible
  on an "infeasible" instance: the exact solve is wrong, which is reported, never hidden.

``optimal`` is true for ``optimal``, false when the optimum is known and the method missed it
(``suboptimal``, ``infeasible``, ``refused``), and null otherwise.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from siftopt.errors import InputError, PolicyRefusal
from siftopt.facade import EXACT_METHODS, resolve_policy, solve_exact, solve_policy
from siftopt.io.instance_file import instance_from_document, load_instance, save_instance
from siftopt.io.profiles import Profile
from siftopt.io.reader import parse_json_text
from siftopt.model.evaluate import energies_equal
from siftopt.model.instance import Instance
from siftopt.result import INFEASIBLE, OPTIMAL, SolveResult

#: Files skipped when a folder is searched (they describe instances, they are not instances).
SKIPPED_NAMES = ("manifest.json",)

FAILING_VERDICTS = ("suboptimal", "infeasible", "refused")


@dataclass(frozen=True)
class Row:
    """One instance × method comparison (null = undefined, see the module docstring)."""

    instance: str
    file: str
    method: str
    energy_j: float | None
    optimum_j: float | None
    gap: float | None
    optimal: bool | None
    feasible: bool
    time_s: float | None
    exact_status: str
    exact_time_s: float
    verdict: str
    note: str = ""


@dataclass
class Report:
    """All rows, the per-method summary, and the counterexample instances."""

    rows: list[Row]
    summary: list[dict[str, Any]]
    counterexamples: list[tuple[Row, Instance]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"rows": [asdict(r) for r in self.rows], "summary": self.summary}


# --------------------------------------------------------------------------------------------
# Finding and loading instances
# --------------------------------------------------------------------------------------------


def _is_instance_document(path: Path) -> bool:
    """Whether a ``.json`` file found in a folder claims to be an instance (has a top-level
    ``siftopt_version``). Unparseable JSON counts as a claim, so that it is reported."""
    try:
        document = parse_json_text(path.read_text(encoding="utf-8"), str(path))
    except (InputError, OSError, UnicodeDecodeError):
        return True
    return isinstance(document, dict) and "siftopt_version" in document


def find_instance_files(paths: Sequence[str]) -> tuple[list[Path], int]:
    """Instance files named by ``paths``: files as given, folders searched recursively for
    ``*.json`` (skipping ``manifest.json`` and JSON files without a top-level
    ``siftopt_version``). Returns the files (sorted, without duplicates) and how many were
    skipped. Raises InputError for a missing path or when nothing is found."""
    files: list[Path] = []
    skipped = 0
    for text in paths:
        path = Path(text)
        if path.is_dir():
            for candidate in sorted(path.rglob("*.json")):
                if candidate.name in SKIPPED_NAMES or not _is_instance_document(candidate):
                    skipped += 1
                else:
                    files.append(candidate)
        elif path.exists():
            files.append(path)
        else:
            raise InputError("no such file or folder", file=text)
    unique: dict[Path, Path] = {}
    for f in files:
        unique.setdefault(f.resolve(), f)
    if not unique:
        raise InputError(f"no instance files (*.json with siftopt_version) in "
                         f"{', '.join(paths)}")
    return list(unique.values()), skipped


def validate_methods(methods: Sequence[str]) -> None:
    """Fail early (InputError) on an unknown method or an unimportable plugin."""
    if not methods:
        raise InputError("give at least one method", path="--methods")
    for method in methods:
        if method not in EXACT_METHODS:
            resolve_policy(method)


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------


def _run_method(inst: Instance, method: str, profile: Profile | None,
                time_limit_s: float | None) -> tuple[SolveResult | None, float, str]:
    """Run one method; returns (result or None if refused, wall time, refusal note)."""
    started = time.perf_counter()
    try:
        if method in EXACT_METHODS:
            result = solve_exact(inst, method, profile=profile, time_limit_s=time_limit_s)
        else:
            result = solve_policy(inst, method)
    except PolicyRefusal as exc:
        return None, time.perf_counter() - started, f"refused: {exc.detail}"
    elapsed = time.perf_counter() - started if method in EXACT_METHODS else result.solve_time_s
    return result, elapsed, ""


#: A one-token instance with one remote node: what the warm-up solves.
_WARM_UP: dict[str, Any] = {
    "siftopt_version": 1, "name": "warm-up",
    "model": {"num_experts": 3, "top_k": 1, "hidden_dim": 1024, "bits_per_element": 16,
              "renormalize_topk": False},
    "placement": [0, 1, 1],
    "bounds": {"beta": [1.0, 1.0, 1.0], "delta": [[0, 0.5, 0.5], [0.5, 0, 0.2], [0.5, 0.2, 0]]},
    "nodes": [{"bandwidth_hz": 1e7, "gain_up_db": -90.0, "gain_down_db": -90.0,
               "power_up_w": 0.2, "power_down_w": 0.2, "compute_s_per_token": 1e-4}],
    "channel": {"noise_psd_dbm_per_hz": -174.0, "fading": "slow"},
    "power_control": "adaptive", "latency_s": 0.01, "accuracy": {"eps_token": 0.3},
    "tokens": {"topk_experts": [[1]], "topk_weights": [[1.0]]},
}


def warm_up(exact: str, methods: Sequence[str], profile: Profile | None) -> None:
    """Pay the one-time start-up (imports, solver library set-up) before anything is timed:
    solve a one-token instance with the exact method and run every method on it, untimed.
    Without it the first instance's exact time would carry ~0.5 s of imports and inflate the
    speed-ups."""
    inst = instance_from_document(_WARM_UP, file="<warm-up>")
    for method in (exact, *methods):
        with contextlib.suppress(InputError, PolicyRefusal):
            _run_method(inst, method, profile, None)


def _violation_note(result: SolveResult) -> str:
    """The first violated constraint, and how many more there are."""
    violations = result.evaluation.violations if result.evaluation is not None else ()
    if not violations:
        return result.message
    more = f" (+{len(violations) - 1} more violations)" if len(violations) > 1 else ""
    return violations[0].message + more


def _gap(energy: float, optimum: float) -> float | None:
    if energies_equal(energy, optimum):
        return 0.0
    if optimum <= 0:
        return None
    return (energy - optimum) / optimum


def compare(inst: Instance, file: str, method: str, truth: SolveResult | None,
            truth_note: str, exact_time_s: float, result: SolveResult | None, time_s: float,
            note: str) -> Row:
    """Build the row of one method on one instance (see the module docstring)."""
    exact_status = truth.status if truth is not None else "error"
    known = truth is not None and truth.status == OPTIMAL
    proved_infeasible = truth is not None and truth.status == INFEASIBLE
    feasible = result is not None and result.feasible
    energy = result.energy_j if feasible else None
    optimum = truth.energy_j if known else None
    gap = None
    if result is None:
        verdict = "refused"
    elif proved_infeasible:
        verdict = "exact_says_infeasible" if feasible else "both_infeasible"
    elif not known:
        verdict = "unverified"
        note = note or f"no proven optimum: exact status {exact_status}. {truth_note}".strip()
    elif not feasible:
        verdict = "infeasible"
        note = note or _violation_note(result)
    else:
        assert energy is not None and optimum is not None
        gap = _gap(energy, optimum)
        if gap == 0.0:
            verdict = "optimal"
        elif energy < optimum:
            verdict = "below_optimum"
            note = "energy below the proven optimum: the exact solve is wrong"
        else:
            verdict = "suboptimal"
            if gap is None:
                note = "the optimum is 0 J, so the relative gap is undefined"
    optimal: bool | None = None
    if verdict == "optimal":
        optimal = True
    elif known and verdict in FAILING_VERDICTS:
        optimal = False
    return Row(instance=inst.name, file=file, method=method, energy_j=energy,
               optimum_j=optimum, gap=gap, optimal=optimal, feasible=feasible,
               time_s=time_s if result is not None else None, exact_status=exact_status,
               exact_time_s=exact_time_s, verdict=verdict, note=note)


Progress = Callable[[int, int, str], None]


def verify(files: Sequence[Path], methods: Sequence[str], *, exact: str = "highs",
           profile: Profile | None = None, time_limit_s: float | None = None,
           progress: Progress | None = None) -> Report:
    """Solve each instance exactly, run each method, and compare (see the module docstring).

    Instances are loaded one at a time (a bad file stops the run with an InputError naming
    it). ``progress(done, total, label)`` is called after every instance.
    """
    if exact not in EXACT_METHODS:
        raise InputError(f"unknown exact method {exact!r} (choose from "
                         f"{', '.join(EXACT_METHODS)})", path="--exact")
    validate_methods(methods)
    if files:
        warm_up(exact, methods, profile)
    rows: list[Row] = []
    counterexamples: list[tuple[Row, Instance]] = []
    for done, path in enumerate(files, start=1):
        inst = load_instance(path)
        started = time.perf_counter()
        truth_note = ""
        try:
            truth: SolveResult | None = solve_exact(inst, exact, profile=profile,
                                                    time_limit_s=time_limit_s)
            truth_note = truth.message
        except InputError as exc:  # e.g. brute force past its size limit
            truth, truth_note = None, str(exc)
        exact_time = time.perf_counter() - started
        for method in methods:
            result, elapsed, note = _run_method(inst, method, profile, time_limit_s)
            row = compare(inst, str(path), method, truth, truth_note, exact_time, result,
                          elapsed, note)
            rows.append(row)
            if row.verdict == "suboptimal":
                counterexamples.append((row, inst))
        if progress is not None:
            progress(done, len(files), inst.name)
    return Report(rows=rows, summary=summarize(rows, methods), counterexamples=counterexamples)


# --------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------


def _pct(part: int, whole: int) -> float | None:
    return None if whole == 0 else 100.0 * part / whole


def summarize(rows: Iterable[Row], methods: Sequence[str]) -> list[dict[str, Any]]:
    """Per method: instances, decided (optimum known), optimal count and %, mean/max gap over
    the optimal and suboptimal rows, % infeasible (of the instances not proved infeasible; refusals
    count as infeasible), refusals, mean times and the speed-up (total exact time / total
    method time)."""
    rows = list(rows)
    out = []
    for method in methods:
        mine = [r for r in rows if r.method == method]
        decided = [r for r in mine if r.optimal is not None]
        gaps = [r.gap for r in mine
                if r.gap is not None and r.verdict in ("optimal", "suboptimal")]
        solvable = [r for r in mine if r.exact_status != INFEASIBLE]
        failed = [r for r in solvable if not r.feasible]
        timed = [r for r in mine if r.time_s is not None]
        method_time = sum(r.time_s for r in timed if r.time_s is not None)
        exact_time = sum(r.exact_time_s for r in timed)
        out.append({
            "method": method,
            "instances": len(mine),
            "decided": len(decided),
            "optimal": sum(1 for r in decided if r.optimal),
            "pct_optimal": _pct(sum(1 for r in decided if r.optimal), len(decided)),
            "mean_gap": sum(gaps) / len(gaps) if gaps else None,
            "max_gap": max(gaps) if gaps else None,
            "pct_infeasible": _pct(len(failed), len(solvable)),
            "refused": sum(1 for r in mine if r.verdict == "refused"),
            "inconsistent": sum(1 for r in mine
                                if r.verdict in ("below_optimum", "exact_says_infeasible")),
            "mean_time_s": method_time / len(timed) if timed else None,
            "exact_mean_time_s": (sum(r.exact_time_s for r in mine) / len(mine)) if mine
            else None,
            "speedup": exact_time / method_time if method_time > 0 else None,
        })
    return out


def expectation_failures(report: Report, method: str) -> list[Row]:
    """Rows where ``method`` is not verified optimal (instances proved infeasible pass)."""
    return [r for r in report.rows
            if r.method == method and r.verdict not in ("optimal", "both_infeasible")]


# --------------------------------------------------------------------------------------------
# Counterexamples
# --------------------------------------------------------------------------------------------


def _size_key(inst: Instance) -> tuple[int, int, int, int]:
    return (inst.num_tokens * inst.top_k, inst.num_nodes, inst.num_experts, inst.num_tokens)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:60] or "instance"


def save_counterexamples(report: Report, folder: str | Path) -> list[Path]:
    """Write every counterexample as an instance file, smallest instance first:
    ``NNN-METHOD-NAME-gapG.json`` (``gapinf`` when the optimum is 0 J)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create folder: {exc.strerror or exc}", file=str(folder)) \
            from None
    ordered = sorted(report.counterexamples,
                     key=lambda x: (_size_key(x[1]), x[0].method, x[0].instance, x[0].file))
    written = []
    for rank, (row, inst) in enumerate(ordered, start=1):
        gap = "inf" if row.gap is None else f"{row.gap:.4g}"
        name = f"{rank:03d}-{_slug(row.method)}-{_slug(inst.name)}-gap{gap}.json"
        npz = tuple(p for p, _ in inst.source.npz_fields) or None
        try:
            written.append(save_instance(inst, folder / name, npz_fields=npz))
        except OSError as exc:
            raise InputError(f"cannot write: {exc.strerror or exc}", file=str(folder / name)) \
                from None
    return written
