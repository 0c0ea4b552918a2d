"""Re-run the commands behind the documented numbers and fail when a number no longer matches.

Usage (from the repository root):

    python benchmarks/reproduce.py --quick          # the quick checks (CI runs these)
    python benchmarks/reproduce.py                  # every check; the long ones state their time
    python benchmarks/reproduce.py --list           # what is checked, where, and how long it takes
    python benchmarks/reproduce.py --only ID[,ID…]  # some checks
    python benchmarks/reproduce.py --only ID --save DIR  # and keep each output as DIR/ID.txt

The checks live in ``benchmarks/claims/*.toml`` (one file per document). Each check names a
document, the command that is written next to the numbers in that document (the check fails if
the command is not there), and the numbers it re-measures:

* ``[[check.value]]`` — a number in running text: ``doc`` is a snippet of the document with
  ``{}`` where the number stands (whitespace and line breaks are ignored), ``out`` the same for
  the command's output (stdout, or the file ``source``), or ``key`` a dotted path into the JSON
  file ``json``, or a cell of a table in the output: ``row`` (the row's first cells, a list),
  ``column`` (its header) and optionally ``table`` (a snippet before the table, default: the
  first table; ``format = "console"`` as for tables below) and ``index`` (which number of the
  cell, default 0); ``scale`` multiplies the measurement first (``1000`` for seconds printed as
  milliseconds in the document);
* ``[[check.table]]`` — a Markdown table: the first table after the snippet ``doc`` in the
  document against the first table after the snippet ``out`` in the output; rows are matched in
  order, cells compared number by number, text cells exactly. With ``rows = "subset"`` the
  output may hold only some of the documented rows (a partial re-run, e.g. one batch size):
  each measured row is compared with the documented row of the same first ``key`` cells
  (default 1), and a measured row the document lacks is a mismatch. With ``rows =
  "documented"`` the document shows only some of the output's rows (an excerpt of a
  transcript): each documented row is compared with the measured row of the same first
  ``key`` cells, other measured rows are ignored, and a documented row the output lacks is a
  mismatch. ``skip_rows`` (a list of first cells, e.g. ``[["prefill128 (L=128)", "fixed",
  "cpsat+slots (exact)"]]``) leaves out documented rows no re-run can repeat (an answer at a
  time limit). With ``unproved = "times"`` a cell that is a decision stopped without a
  proof in both the document and the output (it says ``feasible``) is compared on its time
  numbers only — which feasible answer a time limit leaves differs from run to run — while
  a cell that is ``feasible`` on one side only is still a mismatch. With ``format =
  "console"`` the table is a terminal one (a transcript in a ``console`` block): ``doc`` and
  ``out`` are snippets of its header line, columns are separated by two or more spaces, a line
  of dashes is skipped, and the table ends at the first line with another number of cells.

Tolerances (``tolerance`` of a value, ``tolerance`` / ``columns`` of a table):

* ``"printed"`` (the default) — the documented number, read at its printed precision, must
  contain the measurement: ``0.037`` accepts measurements in ``[0.0365, 0.0375)``;
* ``"rel:X"`` / ``"abs:X"`` — relative / absolute difference at most X;
* ``"upper"`` — the documented number is a bound the measurement must not exceed (printed
  precision counts);
* ``"time:X"`` — a time or a speed: within a factor X either way. Time checks run only without
  ``--quick``: a CI machine is not the machine the times were measured on;
* ``"any"`` — not compared (a column that only labels rows, e.g. a seed list).

A column's tolerance may also be a list, one per number of the cell in order (the last one
repeats): ``["time:5", "printed"]`` for a cell ``0.004, +180 %`` compares the time within a
factor 5 and the energy excess at its printed precision.

A check's ``run`` (default: its ``command``) is what is executed; ``{tmp}`` in ``run``, ``json``
and ``source`` stands for a fresh temporary folder, so re-running never overwrites the
documented outputs. Exit status 0 when every selected check matches, 1 otherwise, 2 on a
malformed claims file.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLAIMS = ROOT / "benchmarks" / "claims"

NUMBER = r"[-+−]?(?:\d[\d,]*\.?\d*|\.\d+)(?:[eE][-+−]?\d+)?"
NUMBER_RE = re.compile(NUMBER)
# a number inside running text: not glued to letters (so "L2", "x86_64" and "v1" are not numbers)
CELL_NUMBER_RE = re.compile(rf"(?<![A-Za-z_\d.]){NUMBER}(?![A-Za-z_\d])")


class Outcome(StrEnum):
    MATCH = "match"
    MISMATCH = "mismatch"
    NOT_CHECKED = "not checked"  # a time under --quick: said, never silent


class ClaimsError(ValueError):
    """The claims file itself is wrong (a snippet not found, a bad tolerance)."""


@dataclass(frozen=True)
class Tolerance:
    """How a documented number and a measured one are compared."""

    kind: str  # printed | rel | abs | upper | time | any
    amount: float = 0.0

    @classmethod
    def parse(cls, text: str) -> Tolerance:
        kind, _, amount = text.partition(":")
        if kind in ("printed", "upper", "any") and not amount:
            return cls(kind)
        if kind in ("rel", "abs", "time") and amount:
            return cls(kind, float(amount))
        raise ClaimsError(f"tolerance {text!r}: expected printed, upper, any, rel:X, abs:X "
                          "or time:X")

    @property
    def is_time(self) -> bool:
        return self.kind == "time"

    def describe(self) -> str:
        return self.kind if not self.amount else f"{self.kind}:{self.amount:g}"

    def accepts(self, documented: str, measured: float) -> bool:
        """Whether ``measured`` matches the number printed as ``documented``."""
        value = parse_number(documented)
        half_unit = 0.5 * printed_unit(documented)
        if self.kind == "any":
            return True
        if not math.isfinite(measured):
            return False
        if self.kind == "printed":
            return value - half_unit <= measured < value + half_unit or measured == value
        if self.kind == "upper":
            return measured < value + half_unit
        if self.kind == "abs":
            return abs(measured - value) <= self.amount + half_unit
        if self.kind == "rel":
            return abs(measured - value) <= self.amount * abs(value) + half_unit
        if self.kind == "time":
            if value <= 0 or measured <= 0:
                return abs(measured - value) <= half_unit
            return 1 / self.amount <= measured / value <= self.amount
        raise AssertionError(self.kind)


def parse_number(text: str) -> float:
    """The value of a printed number (``1,234``, ``−0.5`` and ``3e-4`` included)."""
    return float(text.replace(",", "").replace("−", "-"))


def printed_unit(text: str) -> float:
    """One unit in the last printed digit: ``0.037`` → 0.001, ``4.3e-14`` → 1e-15, ``180`` → 1."""
    mantissa, _, exponent = text.replace(",", "").replace("−", "-").lower().partition("e")
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    return 10.0 ** (int(exponent or 0) - decimals)


def shown(path: Path) -> str:
    """A path as the user wrote it: relative to the repository when inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def squash(text: str) -> str:
    """Whitespace-insensitive form of a text: every run of white space becomes one space."""
    return " ".join(text.split())


def find_number(text: str, snippet: str, where: str) -> str:
    """The number standing at ``{}`` in ``snippet`` inside ``text`` (both whitespace-squashed)."""
    if snippet.count("{}") != 1:
        raise ClaimsError(f"{where}: snippet {snippet!r} needs exactly one {{}}")
    before, after = (re.escape(re.sub(r"\s+", " ", part)) for part in snippet.split("{}"))
    found = re.search(f"{before}({NUMBER}){after}", squash(text))
    if found is None:
        raise ClaimsError(f"{where}: snippet {snippet!r} not found")
    return found.group(1)


# --- Markdown tables ------------------------------------------------------------------------


def tables_after(text: str, snippet: str, where: str, console: bool = False) -> list[list[str]]:
    """The first Markdown table after ``snippet`` in ``text``: rows of stripped cells (with
    ``console``, the terminal table whose header line holds ``snippet``)."""
    lines = text.splitlines()
    squashed = squash(snippet)
    start = next((i for i, line in enumerate(lines) if squashed in squash(line)), None)
    if start is None:
        # a snippet may span lines: search the squashed text and map back by counting lines
        position = squash(text).find(squashed)
        if position < 0:
            raise ClaimsError(f"{where}: snippet {snippet!r} not found")
        start = _line_of(lines, position)
    if console:
        return console_table(lines[start:])
    rows: list[list[str]] = []
    for line in lines[start:]:
        if line.lstrip().startswith("|"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if not all(re.fullmatch(r":?-{3,}:?", cell) for cell in cells):
                rows.append(cells)
        elif rows:
            break
    if not rows:
        raise ClaimsError(f"{where}: no table after {snippet!r}")
    return rows


def console_table(lines: list[str]) -> list[list[str]]:
    """A terminal table from its header line on: cells split at two or more spaces."""
    rows = [re.split(r"\s{2,}", lines[0].strip())]
    for line in lines[1:]:
        if re.fullmatch(r"[-\s]+", line) and "-" in line:
            continue
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) != len(rows[0]):
            break
        rows.append(cells)
    return rows


def _line_of(lines: list[str], squashed_position: int) -> int:
    seen = 0
    for index, line in enumerate(lines):
        seen += len(squash(line)) + 1
        if seen > squashed_position:
            return index
    return len(lines) - 1


@dataclass
class Comparison:
    """The outcome of one value or one table."""

    label: str
    outcome: Outcome
    detail: str = ""


CellTolerance = Tolerance | list[Tolerance]  # a list: one per number of the cell, in order


def compare_tables(label: str, documented: list[list[str]], measured: list[list[str]],
                   default: Tolerance, columns: dict[str, CellTolerance], quick: bool,
                   subset_key: int | None = None, *,
                   documented_key: int | None = None,
                   skip_rows: list[list[str]] | None = None,
                   unproved: str | None = None) -> Comparison:
    """Row by row in order; with ``subset_key`` each measured row against the documented row
    with the same first ``subset_key`` cells (documented rows not measured are skipped); with
    ``documented_key`` each documented row against the measured row with the same first
    ``documented_key`` cells (measured rows not documented are skipped). A documented row whose
    first cells are one of ``skip_rows`` is not compared (a run stopped by a time limit).
    ``unproved="times"``: cells ``feasible`` on both sides compare their time numbers only."""
    header = documented[0]
    if [squash(c) for c in header] != [squash(c) for c in measured[0]]:
        return Comparison(label, Outcome.MISMATCH, f"headers differ: {header} vs {measured[0]}")
    unknown = set(columns) - set(header)
    if unknown:
        raise ClaimsError(f"{label}: columns {sorted(unknown)} not in the table header {header}")
    problems: list[str] = []
    if documented_key is not None:
        by_key = {tuple(squash(c) for c in row[:documented_key]): row for row in measured[1:]}
        pairs = []
        for row_doc in documented[1:]:
            row_new = by_key.get(tuple(squash(c) for c in row_doc[:documented_key]))
            if row_new is None:
                problems.append(f"documented row {row_doc[:documented_key]} is not in the output")
            else:
                pairs.append((row_doc, row_new))
    elif subset_key is None:
        if len(documented) != len(measured):
            return Comparison(label, Outcome.MISMATCH, f"{len(documented) - 1} documented rows, "
                                                       f"{len(measured) - 1} measured")
        pairs = list(zip(documented[1:], measured[1:], strict=True))
    else:
        by_key = {tuple(squash(c) for c in row[:subset_key]): row for row in documented[1:]}
        pairs = []
        for row_new in measured[1:]:
            row_doc = by_key.get(tuple(squash(c) for c in row_new[:subset_key]))
            if row_doc is None:
                problems.append(f"measured row {row_new[:subset_key]} is not documented")
            else:
                pairs.append((row_doc, row_new))
    skip = [[squash(c) for c in key] for key in skip_rows or []]
    kept = [(row_doc, row_new) for row_doc, row_new in pairs
            if not any([squash(c) for c in row_doc[:len(key)]] == key for key in skip)]
    skipped_rows = len(pairs) - len(kept)
    pairs = kept
    skipped_times = 0
    for row_doc, row_new in pairs:
        if len(row_doc) != len(row_new):
            problems.append(f"row {row_doc[0]!r}: {len(row_doc)} cells vs {len(row_new)}")
            continue
        for name, cell_doc, cell_new in zip(header, row_doc, row_new, strict=True):
            tolerance = columns.get(name, default)
            if quick and all(t.is_time for t in _as_list(tolerance)):
                skipped_times += 1
                continue
            if unproved == "times" and _unproved(cell_doc) and _unproved(cell_new):
                problem = compare_times(cell_doc, cell_new, tolerance, quick)
            else:
                problem = compare_cells(cell_doc, cell_new, tolerance, quick)
            if problem:
                problems.append(f"row {row_doc[0]!r}, column {name!r}: {problem}")
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        return Comparison(label, Outcome.MISMATCH, "; ".join(problems[:5]) + more)
    notes = []
    if subset_key is not None:
        notes.append(f"{len(pairs)} of {len(documented) - 1} documented rows measured")
    if documented_key is not None:
        notes.append(f"{len(pairs)} documented rows of {len(measured) - 1} measured")
    if skipped_times:
        notes.append(f"{skipped_times} time cells not checked (--quick)")
    if skipped_rows:
        notes.append(f"{skipped_rows} rows not compared (skip_rows)")
    return Comparison(label, Outcome.MATCH, "; ".join(notes))


def _as_list(tolerance: CellTolerance) -> list[Tolerance]:
    return tolerance if isinstance(tolerance, list) else [tolerance]


def _unproved(cell: str) -> bool:
    """A cell that reports a decision stopped without a proof (``feasible``)."""
    return re.search(r"\bfeasible\b", cell) is not None and "infeasible" not in cell


def compare_times(documented: str, measured: str, tolerance: CellTolerance,
                  quick: bool = False) -> str:
    """Like :func:`compare_cells`, but only the numbers whose tolerance is a time, among the
    numbers both cells have (their text may differ); nothing is compared when quick."""
    numbers_doc = CELL_NUMBER_RE.findall(documented)
    numbers_new = CELL_NUMBER_RE.findall(measured)
    size = min(len(numbers_doc), len(numbers_new))
    return _compare_numbers(numbers_doc[:size], numbers_new[:size], _as_list(tolerance),
                            quick, times_only=True)


def compare_cells(documented: str, measured: str, tolerance: CellTolerance,
                  quick: bool = False) -> str:
    """Empty when the cells match, else what differs. With a list of tolerances the i-th
    number of the cell gets the i-th (the last one repeats); times are skipped when quick."""
    tolerances = _as_list(tolerance)
    if all(t.kind == "any" for t in tolerances):
        return ""
    numbers_doc = CELL_NUMBER_RE.findall(documented)
    numbers_new = CELL_NUMBER_RE.findall(measured)
    text_doc = CELL_NUMBER_RE.sub("#", documented)
    text_new = CELL_NUMBER_RE.sub("#", measured)
    if squash(text_doc) != squash(text_new) or len(numbers_doc) != len(numbers_new):
        return f"{documented!r} vs {measured!r}"
    return _compare_numbers(numbers_doc, numbers_new, tolerances, quick)


def _compare_numbers(numbers_doc: list[str], numbers_new: list[str],
                     tolerances: list[Tolerance], quick: bool, *, times_only: bool = False
                     ) -> str:
    """The i-th numbers of two cells under the i-th tolerance (the last one repeats); times
    are skipped when quick, and with ``times_only`` every number that is not a time."""
    for index, (number_doc, number_new) in enumerate(zip(numbers_doc, numbers_new, strict=True)):
        each = tolerances[min(index, len(tolerances) - 1)]
        if (each.is_time and quick) or (times_only and not each.is_time):
            continue
        if not each.accepts(number_doc, parse_number(number_new)):
            return f"documented {number_doc}, measured {number_new} ({each.describe()})"
    return ""


# --- checks ------------------------------------------------------------------------------------


@dataclass
class Check:
    """One command and the documented numbers it re-measures."""

    id: str
    doc: Path
    command: str
    minutes: float
    quick: bool
    run: str
    json_path: str | None
    source: str | None
    values: list[dict] = field(default_factory=list)
    tables: list[dict] = field(default_factory=list)

    @classmethod
    def from_toml(cls, entry: dict) -> Check:
        try:
            check = cls(id=entry["id"], doc=ROOT / entry["doc"], command=entry["command"],
                        minutes=float(entry["minutes"]), quick=bool(entry.get("quick", False)),
                        run=entry.get("run", entry["command"]), json_path=entry.get("json"),
                        source=entry.get("source"), values=entry.get("value", []),
                        tables=entry.get("table", []))
        except KeyError as missing:
            raise ClaimsError(f"check {entry.get('id', '?')}: missing field {missing}") from None
        if not check.values and not check.tables:
            raise ClaimsError(f"check {check.id}: no value and no table to compare")
        return check


def load_checks(path: Path = CLAIMS) -> list[Check]:
    """The checks of one claims file, or of every ``*.toml`` in a folder (sorted by name)."""
    files = sorted(path.glob("*.toml")) if path.is_dir() else [path]
    checks: list[Check] = []
    for file in files:
        with file.open("rb") as handle:
            try:
                data = tomllib.load(handle)
            except tomllib.TOMLDecodeError as error:
                raise ClaimsError(f"{file}: {error}") from None
        checks.extend(Check.from_toml(entry) for entry in data.get("check", []))
    ids = [check.id for check in checks]
    duplicates = sorted({name for name in ids if ids.count(name) > 1})
    if duplicates:
        raise ClaimsError(f"{path}: duplicate check ids {duplicates}")
    return checks


def command_in_doc(command: str, doc_text: str) -> bool:
    """Whether the command is written in the document (line continuations joined)."""
    joined = re.sub(r"\\\s*\n\s*", " ", doc_text)
    return squash(command) in squash(joined)


@dataclass
class Output:
    """What a check's command produced."""

    text: str
    data: object
    seconds: float


def run_command(check: Check, tmp: Path, log) -> Output:
    argv = shlex.split(check.run.replace("{tmp}", str(tmp)))
    if argv and argv[0] == "python":
        argv[0] = sys.executable
    log(f"[{check.id}] running: {' '.join(argv)}  (documented time ≈ {check.minutes:g} min)")
    started = time.perf_counter()
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    process = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"[{check.id}] exit {process.returncode}: "
                           f"{process.stderr.strip().splitlines()[-3:]}")
    text = process.stdout
    if check.source:
        text = Path(check.source.replace("{tmp}", str(tmp))).read_text()
    data = None
    if check.json_path:
        data = json.loads(Path(check.json_path.replace("{tmp}", str(tmp))).read_text())
    return Output(text, data, seconds)


def json_value(data: object, key: str, where: str) -> float:
    node = data
    for part in key.split("."):
        if isinstance(node, list):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise ClaimsError(f"{where}: key {key!r} not in the JSON output")
    return float(node)


def table_value(text: str, spec: dict, where: str) -> float:
    """The ``index``-th number of the cell in column ``column`` of the row whose first cells are
    ``row``, in the first table after ``table``."""
    rows = tables_after(text, spec.get("table", ""), where, spec.get("format") == "console")
    key = [squash(cell) for cell in spec["row"]]
    header = [squash(cell) for cell in rows[0]]
    if squash(spec["column"]) not in header:
        raise ClaimsError(f"{where}: no column {spec['column']!r} in {rows[0]}")
    column = header.index(squash(spec["column"]))
    found = [row for row in rows[1:] if [squash(cell) for cell in row[:len(key)]] == key]
    if len(found) != 1:
        raise ClaimsError(f"{where}: {len(found)} rows start with {spec['row']}")
    numbers = CELL_NUMBER_RE.findall(found[0][column])
    index = int(spec.get("index", 0))
    if index >= len(numbers):
        raise ClaimsError(f"{where}: cell {found[0][column]!r} has no number {index}")
    return parse_number(numbers[index])


def evaluate_check(check: Check, doc_text: str, output: Output, quick: bool) -> list[Comparison]:
    results: list[Comparison] = []
    for number, spec in enumerate(check.values):
        label = f"{check.id} value {number + 1}"
        tolerance = Tolerance.parse(spec.get("tolerance", "printed"))
        documented = find_number(doc_text, spec["doc"], f"{check.doc.name} ({label})")
        if tolerance.is_time and quick:
            results.append(Comparison(label, Outcome.NOT_CHECKED,
                                      f"time {documented} (--quick checks no times)"))
            continue
        try:
            if "key" in spec:
                measured = json_value(output.data, spec["key"], label)
            elif "row" in spec:
                measured = table_value(output.text, spec, f"output ({label})")
            else:
                measured = parse_number(find_number(output.text, spec["out"],
                                                    f"output ({label})"))
        except ClaimsError as error:  # the output changed shape: a mismatch, not a bad file
            results.append(Comparison(label, Outcome.MISMATCH, str(error)))
            continue
        measured *= float(spec.get("scale", 1))
        ok = tolerance.accepts(documented, measured)
        results.append(Comparison(label, Outcome.MATCH if ok else Outcome.MISMATCH,
                                  f"documented {documented}, measured {measured:.6g} "
                                  f"({tolerance.describe()})"))
    for number, spec in enumerate(check.tables):
        label = f"{check.id} table {number + 1}"
        default = Tolerance.parse(spec.get("tolerance", "printed"))
        columns = {name: ([Tolerance.parse(v) for v in value] if isinstance(value, list)
                           else Tolerance.parse(value))
                   for name, value in spec.get("columns", {}).items()}
        rows = spec.get("rows", "all")
        if rows not in ("all", "subset", "documented"):
            raise ClaimsError(f"{label}: rows {rows!r}: expected all, subset or documented")
        subset_key = int(spec.get("key", 1)) if rows == "subset" else None
        documented_key = int(spec.get("key", 1)) if rows == "documented" else None
        unproved = spec.get("unproved")
        if unproved not in (None, "times"):
            raise ClaimsError(f"{label}: unproved {unproved!r}: expected times")
        console = spec.get("format", "markdown") == "console"
        documented_rows = tables_after(doc_text, spec["doc"], f"{check.doc.name} ({label})",
                                       console)
        try:
            measured_rows = tables_after(output.text, spec.get("out", ""), f"output ({label})",
                                         console)
        except ClaimsError as error:
            results.append(Comparison(label, Outcome.MISMATCH, str(error)))
            continue
        results.append(compare_tables(label, documented_rows, measured_rows, default, columns,
                                      quick, subset_key, documented_key=documented_key,
                                      skip_rows=spec.get("skip_rows"),
                                      unproved=unproved))
    return results


def reproduce(checks: list[Check], quick: bool, log, save: Path | None = None
              ) -> list[Comparison]:
    """Run each check's command once and compare its numbers with the documents; with
    ``save``, each output is also written to ``save/ID.txt`` (to update a document from it)."""
    results: list[Comparison] = []
    for check in checks:
        doc_text = check.doc.read_text()
        if not command_in_doc(check.command, doc_text):
            results.append(Comparison(check.id, Outcome.MISMATCH,
                                      f"command not written in {shown(check.doc)}: "
                                      f"{check.command}"))
            continue
        with tempfile.TemporaryDirectory(prefix="reproduce-") as tmp:
            try:
                output = run_command(check, Path(tmp), log)
            except (RuntimeError, OSError, json.JSONDecodeError) as error:
                results.append(Comparison(check.id, Outcome.MISMATCH, str(error)))
                continue
            log(f"[{check.id}] ran in {output.seconds:.1f} s")
            if save is not None:
                save.mkdir(parents=True, exist_ok=True)
                (save / f"{check.id}.txt").write_text(output.text)
            results.extend(evaluate_check(check, doc_text, output, quick))
    return results


def render(results: list[Comparison]) -> str:
    lines = [f"{result.outcome.value:>11}  {result.label}  {result.detail}".rstrip()
             for result in results]
    counts = {outcome: sum(r.outcome is outcome for r in results) for outcome in Outcome}
    lines.append(", ".join(f"{count} {outcome.value}" for outcome, count in counts.items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="only the quick checks, and no time comparisons")
    parser.add_argument("--only", default=None, metavar="ID[,ID...]")
    parser.add_argument("--list", action="store_true", help="list the checks and exit")
    parser.add_argument("--save", default=None, metavar="DIR",
                        help="also write each check's output to DIR/ID.txt")
    parser.add_argument("--claims", default=str(CLAIMS), metavar="FILE_OR_FOLDER",
                        help="a claims file or a folder of them (default: benchmarks/claims)")
    args = parser.parse_args(argv)
    try:
        checks = load_checks(Path(args.claims))
    except (ClaimsError, OSError) as error:
        print(f"reproduce: {args.claims}: {error}", file=sys.stderr)
        return 2
    if args.only:
        wanted = set(args.only.split(","))
        unknown = wanted - {check.id for check in checks}
        if unknown:
            print(f"reproduce: --only: unknown checks {sorted(unknown)}", file=sys.stderr)
            return 2
        checks = [check for check in checks if check.id in wanted]
    elif args.quick:
        checks = [check for check in checks if check.quick]
    if args.list:
        for check in checks:
            kind = "quick" if check.quick else "long "
            print(f"{kind} {check.minutes:6.1f} min  {check.id:28} {shown(check.doc)}"
                  f"  {len(check.values)} values, {len(check.tables)} tables")
        return 0

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    try:
        results = reproduce(checks, args.quick, log, Path(args.save) if args.save else None)
    except ClaimsError as error:
        print(f"reproduce: {error}", file=sys.stderr)
        return 2
    print(render(results))
    return 1 if any(result.outcome is Outcome.MISMATCH for result in results) else 0


if __name__ == "__main__":
    sys.exit(main())
