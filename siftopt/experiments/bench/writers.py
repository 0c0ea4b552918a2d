"""Writers of the benchmark tables: Markdown, LaTeX (booktabs) and CSV."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from siftopt.experiments.bench.tables import Table


def to_markdown(table: Table) -> str:
    """A GitHub-flavoured Markdown table (numbers right-aligned)."""
    def esc(x: Any) -> str:
        return str(x).replace("|", "\\|")
    align = ["---:" if _numeric_column(table, i) else "---" for i in range(len(table.header))]
    lines = ["| " + " | ".join(esc(h) for h in table.header) + " |",
             "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in table.rows]
    return "\n".join(lines) + "\n"


def _numeric_column(table: Table, i: int) -> bool:
    cells = [str(r[i]).split(" ")[0] for r in table.rows
             if str(r[i]) not in ("-", "", "infeasible")]
    if not cells:
        return False
    try:
        [float(c) for c in cells]
    except ValueError:
        return False
    return True


_LATEX_SPECIAL = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
                  "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "\\": r"\textbackslash{}"}


def latex_escape(text: Any) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def to_latex(table: Table) -> str:
    """A booktabs ``table`` environment (needs ``\\usepackage{booktabs}``)."""
    spec = "".join("r" if _numeric_column(table, i) else "l" for i in range(len(table.header)))
    lines = [r"\begin{table}[ht]", r"\centering", f"\\caption{{{latex_escape(table.title)}}}",
             f"\\label{{tab:{table.name}}}", f"\\begin{{tabular}}{{{spec}}}", r"\toprule",
             " & ".join(latex_escape(h) for h in table.header) + r" \\", r"\midrule"]
    lines += [" & ".join(latex_escape(c) for c in row) + r" \\" for row in table.rows]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def write_tables(tables: list[Table], folder: Path) -> list[Path]:
    """Write each table as ``NAME.md``, ``NAME.tex`` and ``NAME.csv``; return the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for t in tables:
        for suffix, text in ((".md", to_markdown(t)), (".tex", to_latex(t))):
            path = folder / f"{t.name}{suffix}"
            path.write_text(text, encoding="utf-8")
            paths.append(path)
        path = folder / f"{t.name}.csv"
        t.csv.to_csv(path, index=False)
        paths.append(path)
    return paths
