"""The benchmarks' report tables: rich tables in the terminal, Markdown in the report.

A section is (title, header, rows); `text` names the columns aligned left (the others
are figures, aligned right). A row is coloured by its `verdict` column (else its last
cell) when that says PASS or FAIL.
"""

from __future__ import annotations

import sys
from collections.abc import Collection, Sequence

Section = tuple[str, list[str], list[list[str]]]


def print_report(sections: Sequence[Section], text: Collection[str], width: int = 200
                 ) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else width)
    for title, header, rows in sections:
        table = Table(title=title)
        for col in header:
            table.add_column(col, justify="left" if col in text else "right")
        at = header.index("verdict") if "verdict" in header else -1
        for row in rows:
            table.add_row(*row, style={"PASS": "green", "FAIL": "red"}.get(row[at]))
        console.print(table)


def markdown(sections: Sequence[Section], text: Collection[str]) -> str:
    out = []
    for title, header, rows in sections:
        out += [f"**{title}**", "", "| " + " | ".join(header) + " |",
                "|" + "|".join("---" if c in text else "---:" for c in header) + "|"]
        out += ["| " + " | ".join(row) + " |" for row in rows]
        out.append("")
    return "\n".join(out)
