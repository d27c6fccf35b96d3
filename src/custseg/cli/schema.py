"""`custseg schema` (the inferred feature schema, without training) and the parts of the
run summary that show what custseg decided: the schema table, the k candidates and the
warnings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from custseg.cli.common import DEFAULT_CONFIG, ConfigOpt, JsonOpt, print_table

__all__ = ["features_yaml", "print_candidates", "print_schema", "print_schema_lines",
           "print_warnings", "schema"]


def print_schema(rows: list[dict[str, Any]]) -> None:
    """One line per input column: role, transform and the reason for the role."""
    print_table(["column", "role", "transform", "reason"],
                [[r["name"], r["role"], r["transform"], r["reason"]] for r in rows])


def _short(transform: str) -> str:
    """A transform in a few words: "days, clip, log, scale" or "one-hot x0.55"."""
    if transform.startswith("one-hot"):
        weight = transform.partition("weight ")[2].rstrip(")")
        return f"one-hot x{weight}" if weight else "one-hot"
    words = [("days before", "days"), ("clip [", "clip"), ("log1p", "log"),
             ("signed log", "signed log"), ("standardise", "scale")]
    short = [short for key, short in words if key in transform]
    return ", ".join(short) or transform


def print_schema_lines(rows: list[dict[str, Any]]) -> None:
    """The schema as compact lines (the run summary): name, role, transform, reason."""
    width = max(len(r["name"]) for r in rows)
    typer.echo("Schema (custseg schema --yaml writes it as an editable features: block):")
    for r in rows:
        typer.echo(f"  {r['name']:<{width}}  {r['role']:<12}  {_short(r['transform']):<20}  "
                   f"{r['reason']}")


def print_candidates(candidates: list[dict[str, Any]], chosen: int, sentence: str) -> None:
    """The k sweep: metrics, smallest share and stability per k; the chosen one marked."""
    typer.echo("Candidates (* chosen, x not eligible):")
    typer.echo("    k  silhouette  Calinski-H.  Davies-B.  smallest  stability")
    for c in candidates:
        mark = "*" if c["k"] == chosen else ("" if c.get("eligible", True) else "x")
        stab = c.get("stability")
        note = f"  {c['note']}" if c.get("note") else ""
        typer.echo(f"  {c['k']:>3}{mark:1} {c['silhouette']:>10.4f} "
                   f"{c['calinski_harabasz']:>12.1f} {c['davies_bouldin']:>10.4f} "
                   f"{c.get('min_share', 0.0):>9.1%} "
                   f"{'-' if stab is None else f'{stab:.2f}':>10}{note}")
    if sentence:
        typer.echo(sentence)
    from custseg.report.sections import scored_note

    if scored_note(candidates):
        typer.echo(scored_note(candidates))


def print_warnings(warnings: list[str]) -> None:
    for line in warnings:
        typer.echo(f"warning: {line}")


def features_yaml(rows: list[dict[str, Any]], transforms: dict[str, str]) -> str:
    """A `features:` block reproducing a schema, for the user to paste and edit."""
    import yaml

    def names(*roles: str) -> list[str]:
        return [r["name"] for r in rows if r["role"] in roles]

    block: dict[str, Any] = {
        "numeric": names("numeric"),
        "categorical": names("categorical"),
        "dates": names("date"),
        "profile_only": names("profile_only"),
        "ignore": names("ignored"),
        "transform": "auto",
    }
    if transforms:
        block["transforms"] = transforms
    text = yaml.safe_dump({"features": block}, sort_keys=False, default_flow_style=None,
                          width=100)
    notes = "".join(f"# {r['name']}: {r['role']} ({r['reason']}; {r['transform']})\n"
                    for r in rows)
    return "# the inferred schema, one comment per column; edit the lists as needed\n" + \
        notes + text


def schema(
    config: ConfigOpt = DEFAULT_CONFIG,
    as_yaml: Annotated[bool, typer.Option(
        "--yaml", help="Print an editable `features:` block for the config.")] = False,
    output: Annotated[Path | None, typer.Option(
        "-o", "--output", help="Write the --yaml block to this file.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The feature schema (role, transform and reason per column), without training."""
    from custseg.config import load_config
    from custseg.core.preprocessing import fit_features, schema_rows
    from custseg.core.schema import infer_schema
    from custseg.io.data import read_data

    cfg = load_config(config)
    f = cfg.features
    declared = f.numeric is not None or f.categorical is not None
    data = read_data(cfg.data_location, delimiter=cfg.csv.delimiter,
                     s3_endpoint_url=cfg.s3.endpoint_url,
                     include=[*(f.numeric or []), *(f.categorical or []), *f.dates,
                              *f.profile_only] if declared else None,
                     exclude=f.ignore)
    inferred = infer_schema(data.table, f, data.files[0], header=data.meta.get("header"))
    transform, _ = fit_features(data.table, inferred, data.locate, f)
    rows = schema_rows(inferred, transform)
    if as_json:
        typer.echo(json.dumps({"columns": rows, "rows": data.table.num_rows}, indent=2))
    elif as_yaml or output:
        text = features_yaml(rows, dict(f.transforms))
        if output:
            output.write_text(text, encoding="utf-8")
            typer.echo(f"Wrote the features block to {output}")
        else:
            typer.echo(text, nl=False)
    else:
        print_schema(rows)
