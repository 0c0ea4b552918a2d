"""benchmarks/reproduce.py: documented numbers are compared with re-run commands, and a changed
number, a missing command or a changed table makes it fail."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import reproduce  # noqa: E402
from reproduce import Outcome, Tolerance  # noqa: E402


@pytest.mark.parametrize(("tolerance", "documented", "measured", "expected"), [
    ("printed", "0.037", 0.03749, True),
    ("printed", "0.037", 0.0375, False),
    ("printed", "0.037", 0.0364, False),
    ("printed", "4.3e-14", 4.26e-14, True),
    ("printed", "4.3e-14", 4.4e-14, False),
    ("printed", "1,234", 1234.4, True),
    ("upper", "8e-15", 3e-15, True),
    ("upper", "8e-15", 9e-15, False),
    ("rel:0.1", "2.0", 2.19, True),
    ("rel:0.1", "2.0", 2.3, False),
    ("abs:0.5", "3", 3.9, True),
    ("abs:0.5", "3", 4.1, False),
    ("time:3", "1.0", 2.9, True),
    ("time:3", "1.0", 0.3, False),
    ("any", "7", 1e9, True),
])
def test_tolerances(tolerance, documented, measured, expected):
    assert Tolerance.parse(tolerance).accepts(documented, measured) is expected


def test_bad_tolerance_is_a_claims_error():
    with pytest.raises(reproduce.ClaimsError):
        Tolerance.parse("rel")


def test_tables_compare_cell_by_cell():
    doc = [["method", "gap (%)", "time (s)"], ["a", "0.5", "1.0"], ["b", "inf", "2"]]
    same = [["method", "gap (%)", "time (s)"], ["a", "0.54", "9.0"], ["b", "inf", "2"]]
    columns = {"time (s)": Tolerance.parse("time:2")}
    printed = Tolerance.parse("printed")
    assert reproduce.compare_tables("t", doc, same, printed, columns, quick=True).outcome \
        is Outcome.MATCH
    slow = reproduce.compare_tables("t", doc, same, printed, columns, quick=False)
    assert slow.outcome is Outcome.MISMATCH and "time (s)" in slow.detail
    other = [["method", "gap (%)", "time (s)"], ["a", "0.6", "1.0"], ["b", "inf", "2"]]
    assert reproduce.compare_tables("t", doc, other, printed, columns, True).outcome \
        is Outcome.MISMATCH
    fewer = doc[:2]
    assert reproduce.compare_tables("t", doc, fewer, printed, columns, True).outcome \
        is Outcome.MISMATCH



def test_a_list_of_tolerances_applies_to_the_numbers_of_a_cell_in_order():
    doc = [["L", "policy"], ["128", "0.004, +180 %"]]
    slower = [["L", "policy"], ["128", "0.011, +180 %"]]
    other = [["L", "policy"], ["128", "0.004, +181 %"]]
    columns = {"policy": [Tolerance.parse("time:5"), Tolerance.parse("printed")]}
    printed = Tolerance.parse("printed")
    assert reproduce.compare_tables("t", doc, slower, printed, columns, quick=False).outcome \
        is Outcome.MATCH
    assert reproduce.compare_tables("t", doc, other, printed, columns, quick=True).outcome \
        is Outcome.MISMATCH  # the excess is compared under --quick too, the time is not
    much_slower = [["L", "policy"], ["128", "0.05, +180 %"]]
    assert reproduce.compare_tables("t", doc, much_slower, printed, columns, True).outcome \
        is Outcome.MATCH
    assert reproduce.compare_tables("t", doc, much_slower, printed, columns, False).outcome \
        is Outcome.MISMATCH


def test_subset_rows_are_matched_by_their_key_cells():
    doc = [["L", "power", "E"], ["1", "fixed", "2.0"], ["1", "adaptive", "3.0"],
           ["8", "fixed", "4.0"]]
    printed = Tolerance.parse("printed")
    part = [["L", "power", "E"], ["1", "adaptive", "3.0"]]
    result = reproduce.compare_tables("t", doc, part, printed, {}, True, subset_key=2)
    assert result.outcome is Outcome.MATCH and "1 of 3" in result.detail
    assert reproduce.compare_tables("t", doc, part, printed, {}, True).outcome \
        is Outcome.MISMATCH  # without subset every row must be there
    changed = [["L", "power", "E"], ["1", "adaptive", "3.1"]]
    assert reproduce.compare_tables("t", doc, changed, printed, {}, True, 2).outcome \
        is Outcome.MISMATCH
    unknown = [["L", "power", "E"], ["2", "adaptive", "3.0"]]
    assert reproduce.compare_tables("t", doc, unknown, printed, {}, True, 2).outcome \
        is Outcome.MISMATCH


def test_documented_rows_are_an_excerpt_of_the_output():
    doc = [["instance", "method", "E"], ["a", "x", "2.0"]]
    printed = Tolerance.parse("printed")
    full = [["instance", "method", "E"], ["a", "y", "9.0"], ["a", "x", "2.0"], ["b", "x", "1"]]
    result = reproduce.compare_tables("t", doc, full, printed, {}, True, documented_key=2)
    assert result.outcome is Outcome.MATCH and "1 documented rows of 3" in result.detail
    changed = [["instance", "method", "E"], ["a", "x", "2.1"], ["b", "x", "1"]]
    assert reproduce.compare_tables("t", doc, changed, printed, {}, True,
                                    documented_key=2).outcome is Outcome.MISMATCH
    missing = [["instance", "method", "E"], ["b", "x", "1"]]
    assert reproduce.compare_tables("t", doc, missing, printed, {}, True,
                                    documented_key=2).outcome is Outcome.MISMATCH


def write_case(tmp_path: Path, documented: str, command_in_doc: bool = True) -> Path:
    command = "python -c \"print('| x | y |'); print('|---|---|'); print('| 1 | 2.50 |')\""
    doc = tmp_path / "doc.md"
    shown_command = command if command_in_doc else "python something-else.py"
    doc.write_text(textwrap.dedent(f"""\
        Run `{shown_command}`: the mean is {documented} per cell.

        | x | y |
        |---|---:|
        | 1 | {documented} |
        """))
    claims = tmp_path / "claims.toml"
    claims.write_text(textwrap.dedent(f"""\
        [[check]]
        id = "case"
        doc = "{doc}"
        command = '''{command}'''
        minutes = 0.01
        quick = true
        [[check.value]]
        doc = "the mean is {{}} per cell"
        out = "| 1 | {{}} |"
        [[check.table]]
        doc = "per cell"
        """))
    return claims


def run(claims: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "reproduce.py"),
                           "--claims", str(claims), "--quick"],
                          capture_output=True, text=True, cwd=ROOT)


def test_matching_documented_number_passes(tmp_path):
    result = run(write_case(tmp_path, "2.5"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 match, 0 mismatch" in result.stdout


def test_save_keeps_each_output(tmp_path):
    claims = write_case(tmp_path, "2.5")
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "reproduce.py"),
                             "--claims", str(claims), "--save", str(tmp_path / "out")],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "| 1 | 2.50 |" in (tmp_path / "out" / "case.txt").read_text()


def test_changed_documented_number_fails(tmp_path):
    result = run(write_case(tmp_path, "2.6"))
    assert result.returncode == 1
    assert "documented 2.6, measured 2.5" in result.stdout


def test_command_missing_from_the_doc_fails(tmp_path):
    result = run(write_case(tmp_path, "2.5", command_in_doc=False))
    assert result.returncode == 1
    assert "command not written in" in result.stdout


def test_every_check_names_a_document_that_holds_its_command():
    for check in reproduce.load_checks():
        assert check.doc.exists(), check.id
        assert reproduce.command_in_doc(check.command, check.doc.read_text()), check.id


def test_quick_checks_reproduce_the_documented_numbers():
    """The CI run of `benchmarks/reproduce.py --quick`: every quick documented number matches."""
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "reproduce.py"),
                             "--quick"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]


def test_claims_file_reads_subset_rows_and_tolerance_lists(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("Run `python x.py`:\n\n| L | cell |\n|---|---|\n| 1 | 0.5, +3 % |\n"
                   "| 2 | 0.7, +4 % |\n")
    check = reproduce.Check.from_toml({
        "id": "t", "doc": str(doc), "command": "python x.py", "minutes": 0.01,
        "table": [{"doc": "Run", "rows": "subset",
                   "columns": {"cell": ["time:3", "printed"]}}]})
    output = reproduce.Output("| L | cell |\n|---|---|\n| 2 | 1.4, +4 % |\n", None, 0.0)
    [result] = reproduce.evaluate_check(check, doc.read_text(), output, quick=False)
    assert result.outcome is Outcome.MATCH, result.detail
    check.tables[0]["rows"] = "some"
    with pytest.raises(reproduce.ClaimsError):
        reproduce.evaluate_check(check, doc.read_text(), output, quick=False)


def test_scale_converts_units_and_a_missing_output_snippet_is_a_mismatch(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("Run `python x.py`: it takes 2.1 ms.\n")
    check = reproduce.Check.from_toml({
        "id": "t", "doc": str(doc), "command": "python x.py", "minutes": 0.01,
        "value": [{"doc": "it takes {} ms", "out": "total {} s", "scale": 1000}]})
    [result] = reproduce.evaluate_check(check, doc.read_text(),
                                        reproduce.Output("total 0.00213 s", None, 0.0), False)
    assert result.outcome is Outcome.MATCH, result.detail
    [result] = reproduce.evaluate_check(check, doc.read_text(),
                                        reproduce.Output("no such line", None, 0.0), False)
    assert result.outcome is Outcome.MISMATCH and "not found" in result.detail


def test_a_value_may_name_a_table_cell_of_the_output(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("Run `python x.py`: L = 512 takes 31 s, the gap is 170 %.\n")
    output = reproduce.Output("| L | power | cell |\n|---|---|---|\n| 128 | fixed | 2.0 |\n"
                              "| 512 | fixed | 31.4 / 60 feasible, 170 % above |\n", None, 0.0)
    check = reproduce.Check.from_toml({
        "id": "t", "doc": str(doc), "command": "python x.py", "minutes": 0.01,
        "value": [{"doc": "L = 512 takes {} s", "row": ["512", "fixed"], "column": "cell"},
                  {"doc": "the gap is {} %", "row": ["512"], "column": "cell", "index": 2},
                  {"doc": "the gap is {} %", "row": ["4096"], "column": "cell"}]})
    results = reproduce.evaluate_check(check, doc.read_text(), output, quick=False)
    assert [r.outcome for r in results] == [Outcome.MATCH, Outcome.MATCH, Outcome.MISMATCH]


def test_console_tables_split_at_two_spaces_and_end_at_another_shape():
    transcript = textwrap.dedent("""\
        $ siftopt solve x.json
        node  tokens  energy_j     note
        ----  ------  -----------  ---------
           1       2  3.08067e-05  a b
           2       0            0  -
        mean degradation 0.1 (budget 0.2)
        """)
    rows = reproduce.tables_after(transcript, "node tokens energy_j", "t", console=True)
    assert rows == [["node", "tokens", "energy_j", "note"], ["1", "2", "3.08067e-05", "a b"],
                    ["2", "0", "0", "-"]]
    changed = transcript.replace("3.08067e-05", "3.1e-05")
    measured = reproduce.tables_after(changed, "node  tokens", "t", console=True)
    printed = Tolerance.parse("printed")
    assert reproduce.compare_tables("t", rows, measured, printed, {}, True).outcome \
        is Outcome.MISMATCH
    assert reproduce.compare_tables("t", rows, rows, printed, {}, True).outcome is Outcome.MATCH
    cell = {"table": "node  tokens", "format": "console", "row": ["2"], "column": "tokens"}
    assert reproduce.table_value(transcript, cell, "t") == 0.0


def test_skip_rows_leaves_out_rows_no_rerun_can_repeat():
    doc = [["instance", "method", "E"], ["a", "exact", "1.0"], ["a", "cpsat", "3.0"]]
    new = [["instance", "method", "E"], ["a", "exact", "1.0"], ["a", "cpsat", "2.2"]]
    printed = Tolerance.parse("printed")
    assert reproduce.compare_tables("t", doc, new, printed, {}, False).outcome \
        is Outcome.MISMATCH
    result = reproduce.compare_tables("t", doc, new, printed, {}, False,
                                      skip_rows=[["a", "cpsat"]])
    assert result.outcome is Outcome.MATCH and "1 rows not compared" in result.detail
    changed = [["instance", "method", "E"], ["a", "exact", "1.1"], ["a", "cpsat", "2.2"]]
    assert reproduce.compare_tables("t", doc, changed, printed, {}, False,
                                    skip_rows=[["a", "cpsat"]]).outcome is Outcome.MISMATCH


def test_unproved_times_compares_only_the_times_of_cells_stopped_without_a_proof():
    """A time-limited cell ('feasible') may end with another feasible answer on a re-run:
    with unproved = "times" only its times count; a cell feasible on one side only, or a
    proved cell that changed, still mismatches."""
    cell = [Tolerance.parse("time:5")] * 3 + [Tolerance.parse("printed")]
    doc = [["L", "m"], ["512", "0.0154 / 60 / 60 feasible (the optimum, unproved)"],
           ["1024", "0.01 / 0.5 / 0.51 **opt**"]]
    other_answer = [["L", "m"], ["512", "0.0152 / 60.1 / 60.1 feasible, 0.00478 % above"],
                    ["1024", "0.01 / 0.5 / 0.51 **opt**"]]
    printed = Tolerance.parse("printed")
    assert reproduce.compare_tables("t", doc, other_answer, printed, {"m": cell},
                                    False).outcome is Outcome.MISMATCH
    assert reproduce.compare_tables("t", doc, other_answer, printed, {"m": cell}, False,
                                    unproved="times").outcome is Outcome.MATCH
    for first in ("0.0152 / 600 / 600 feasible, 0.00478 % above",  # 10x slower
                  "0.0152 / 50 / 50 **opt**",  # proved now
                  "0.0154 / 60 / 60 infeasible"):
        changed = [["L", "m"], ["512", first], ["1024", "0.01 / 0.5 / 0.51 **opt**"]]
        assert reproduce.compare_tables("t", doc, changed, printed, {"m": cell}, False,
                                        unproved="times").outcome is Outcome.MISMATCH, first
    proof_changed = [other_answer[0], other_answer[1], ["1024", "0.01 / 0.5 / 0.51 infeasible"]]
    assert reproduce.compare_tables("t", doc, proof_changed, printed, {"m": cell}, False,
                                    unproved="times").outcome is Outcome.MISMATCH
