"""Writing a model's segment report (HTML) and its profiles (CSV) to files.

`report/` renders text from the model's metadata; this module puts it on disk: at the
end of every successful run (so `custseg.run()` from Python writes one too) and for
`custseg report`; the dashboard serves the same page (`report_html`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from custseg.artifact.scorer import Model
from custseg.core.preprocessing import schema_rows
from custseg.errors import CustsegError

__all__ = ["default_path", "report_html", "report_meta", "write_report"]


def default_path(store_folder: Path, title: str) -> Path:
    """`<store>/reports/<last word of the title>.html` (an execution id or a version)."""
    return store_folder / "reports" / f"{title.split()[-1].replace('/', '-')}.html"


def report_meta(model: Model) -> dict[str, Any]:
    """What the report reads: the model's metadata and its schema, with each column's
    transform in words (as model.json stores them)."""
    columns = schema_rows(model.schema, model.transform)
    return model.meta | {"schema": model.schema.to_dict() | {"columns": columns}}


def report_html(model: Model, title: str, subtitle: str) -> str:
    """The segment report of `model` as one self-contained HTML page (also what the
    dashboard shows)."""
    from custseg.report import render_report

    return render_report(report_meta(model), title=title, subtitle=subtitle)


def write_report(model: Model, path: Path, title: str, subtitle: str,
                 profiles_csv: Path | None = None) -> Path:
    """Render `model`'s report into `path`, and its segment profiles as CSV into
    `profiles_csv` when given. Raises CustsegError naming the file that cannot be
    written."""
    from custseg.report import profiles_csv as profiles_text

    target = path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(report_html(model, title, subtitle), encoding="utf-8")
        if profiles_csv is not None:
            target = profiles_csv
            profiles_csv.parent.mkdir(parents=True, exist_ok=True)
            profiles_csv.write_text(profiles_text(report_meta(model)), encoding="utf-8",
                                    newline="")
    except OSError as exc:
        raise CustsegError(f"cannot write the report {target}: {exc.strerror or exc}") from None
    return path
