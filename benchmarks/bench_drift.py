"""Drift case study: does `custseg monitor` catch a shifted month, and stay quiet on an
unshifted one? (issue 13, part 4; the write-up is docs/drift-case-study.md.)

Data: the UCI "Online Shoppers Purchasing Intention" sessions shipped in
examples/online_shoppers/ (12,330 rows, CC BY 4.0, C. O. Sakar and Y. Kastro 2018; the
same file as /work/shared/data/online_shoppers_intention.csv). `--data PATH` reads
another copy; without the file the benchmark says so and exits 2.

Setup, all through the product's own paths:

* split: a seeded random 70% of the rows (numpy default_rng(SPLIT_SEED)) trains the
  model, the other 30% ("held out") is the only source of replays. A random split, not a
  split by Month: a month-split would make Month itself (and the seasonal features) shift
  in every replay, so an "unshifted" replay could not exist. The held-out rows of single
  real months are replayed too, as context (`real month` rows);
* training: `custseg run -c CONFIG --json` (a subprocess) with the example's config
  (`n_clusters: auto`, `n_components: auto`, no features block, `endpoint: {autostart:
  false}`) into a temporary store; the `monitor:` section is left at its defaults;
* every replay is a CSV file judged by `custseg monitor ENDPOINT -c CONFIG --data FILE
  --json --fail-on-drift` (a subprocess): the JSON report is read and the exit code
  checked (1 when the report flags drift, 0 when not; anything else stops the run);
* unshifted replays: NULL_REPLAYS (20) seeded random samples (without replacement, seeds
  NULL_SEED + i; `sample_month` says why not a bootstrap) of the held-out rows, of
  MONTH_ROWS (1,233: the data's 12,330 sessions over its 10 months) rows, and 20 more of
  3,000 rows (a busier month). The false-alarm rate is the share of them with any flag,
  per check and overall;
* shifted replays, one change each, applied to one sampled month (seed SHIFT_SEED) so
  that only the shift differs between the rungs of a ladder:
  (a) ProductRelated_Duration multiplied by 1.05 .. 3 (headline x1.5: sessions half
      again as long), and ExitRates moved up by 0.05 .. 1 of its IQR (headline 0.5 IQR);
  (b) VisitorType set to a level training never saw ("Partner_Referral") in 1% .. 20% of
      the rows (headline 10%), and Month set to "Jan" (absent from the data) in every row;
  (c) the smallest segment's share (the model's own assignments of the held-out rows,
      `custseg.load_model(model_uri).predict`) times 0.5 .. 2 (headline x2 and x0.5), the
      other segments scaled to fill the rest in their held-out proportions, rows drawn
      within each segment (seed SHIFT_SEED).

Prints the tables and writes benchmarks/out/bench_drift-<UTC time>.json (every report)
and .md (the tables), and a PNG of the ladders (figure: `--figure PATH`, default beside
them). Exit status 0 when every headline shift is caught by the check meant for it and
the 1,233-row false-alarm rate is at most 1 in 20; 1 otherwise.

Usage: uv run --group bench python benchmarks/bench_drift.py [--data PATH] [--figure PATH]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import report_tables

BENCH_DIR = Path(__file__).resolve().parent
OUT_DIR = BENCH_DIR / "out"
SHIPPED = BENCH_DIR.parent / "examples" / "online_shoppers" / "online_shoppers_intention.csv"
SHARED = Path("/work/shared/data/online_shoppers_intention.csv")
# not resolved: the venv's python is a symlink, and resolving it would leave the venv
CUSTSEG = str(Path(sys.executable).parent / "custseg")

PROJECT = "drift-bench"
ENDPOINT = f"{PROJECT}-endpoint-dev"
SPLIT_SEED, NULL_SEED, SHIFT_SEED = 0, 1000, 2000
TRAIN_FRACTION = 0.7
MONTH_ROWS = 1_233  # 12,330 sessions over the 10 months in the data
BUSY_ROWS = 3_000
NULL_REPLAYS = 20
MAX_FALSE_ALARMS = 1  # of NULL_REPLAYS at MONTH_ROWS

DURATION, RATE, VISITOR, MONTH = "ProductRelated_Duration", "ExitRates", "VisitorType", "Month"
NEW_VISITOR_TYPE = "Partner_Referral"
UNSEEN_MONTH = "Jan"
DURATION_FACTORS = (1.05, 1.1, 1.2, 1.3, 1.5, 1.75, 2.0, 3.0)
RATE_IQRS = (0.05, 0.1, 0.25, 0.5, 1.0)
NEW_SHARES = (0.01, 0.02, 0.03, 0.05, 0.1, 0.2)
SEGMENT_FACTORS = (0.5, 0.75, 0.9, 1.1, 1.25, 1.5, 2.0)
HEADLINE = {"duration": 1.5, "rate": 0.5, "visitor": 0.1, "segment": (2.0, 0.5)}

CHECKS = ("feature PSI", "unseen", "missing", "segment chi2", "segment PSI", "distance",
          "schema")


class BenchError(RuntimeError):
    """A product command failed or answered something unusable."""


# -- replays: frames in, frames out (pure; tests/test_bench_drift.py) ---------------------

def split_rows(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random split of range(n): (the `fraction` that trains, the rest), each
    sorted."""
    order = np.random.default_rng(seed).permutation(n)
    cut = round(n * fraction)
    return np.sort(order[:cut]), np.sort(order[cut:])


def sample_month(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    """`rows` distinct rows of `frame`, a seeded random sample without replacement.

    Of the held-out rows, such a sample is a random sample of the population the
    training rows were drawn from, disjoint from them. A bootstrap (with replacement)
    would not be: every replay would carry the held-out pool's own deviation from the
    population (a variance of 1/pool beside the window's 1/rows), and repeat rows.
    """
    if rows > len(frame):
        raise ValueError(f"a sample of {rows:,} rows from {len(frame):,}")
    pick = np.random.default_rng(seed).choice(len(frame), rows, replace=False)
    return frame.iloc[np.sort(pick)].reset_index(drop=True)


def scale_numeric(frame: pd.DataFrame, column: str, factor: float) -> pd.DataFrame:
    """`column` times `factor` (a duration that grows keeps its zeros)."""
    out = frame.copy()
    out[column] = out[column].astype(float) * factor
    return out


def move_numeric(frame: pd.DataFrame, column: str, iqrs: float, reference: pd.Series
                 ) -> pd.DataFrame:
    """`column` plus `iqrs` times the interquartile range of `reference` (the training
    rows), clipped to the reference's range (a rate stays a rate)."""
    q1, q3 = reference.quantile([0.25, 0.75])
    out = frame.copy()
    moved = out[column].astype(float) + iqrs * (q3 - q1)
    out[column] = moved.clip(reference.min(), reference.max())
    return out


def new_category(frame: pd.DataFrame, column: str, value: str, share: float, seed: int
                 ) -> pd.DataFrame:
    """`column` set to `value` in a seeded `share` of the rows (exactly round(share * n))."""
    out = frame.copy()
    rows = np.random.default_rng(seed).choice(len(out), round(share * len(out)),
                                              replace=False)
    values = out[column].astype(object).to_numpy(copy=True)
    values[rows] = value
    out[column] = values
    return out


def segment_mix(labels: np.ndarray, segment: int, factor: float) -> np.ndarray:
    """Target shares per segment: `segment`'s share in `labels` times `factor`, the others
    scaled together to fill the rest (their mix unchanged)."""
    counts = np.bincount(labels).astype(float)
    shares = counts / counts.sum()
    target = min(shares[segment] * factor, 1.0)
    rest = 1.0 - shares[segment]
    out = shares * ((1.0 - target) / rest if rest > 0 else 0.0)
    out[segment] = target
    return out


def segment_shift(frame: pd.DataFrame, labels: np.ndarray, segment: int, factor: float,
                  rows: int, seed: int) -> pd.DataFrame:
    """`rows` rows of `frame` in which `segment` (per `labels`, one per row) has `factor`
    times its share: exact counts per segment (largest remainders), drawn within each
    segment without replacement (with replacement when it has too few rows)."""
    mix = segment_mix(labels, segment, factor)
    counts = np.floor(mix * rows).astype(int)
    short = rows - counts.sum()
    counts[np.argsort(-(mix * rows - counts), kind="stable")[:short]] += 1
    rng = np.random.default_rng(seed)
    picks = []
    for s, c in enumerate(counts):
        members = np.flatnonzero(labels == s)
        if c > 0:
            picks.append(rng.choice(members, c, replace=bool(c > len(members))))
    order = rng.permutation(np.concatenate(picks))
    return frame.iloc[order].reset_index(drop=True)


# -- the product's paths -----------------------------------------------------------------

def write_config(folder: Path, train_csv: Path) -> Path:
    """The example's config, pointed at the training rows, into a store in `folder`."""
    lines = [f"project_name: {PROJECT}", f"data_uri: {train_csv.parent}",
             f"data_file: {train_csv.name}", "n_clusters: auto", "n_components: auto",
             f"store: {folder / 'store'}", "endpoint: {autostart: false}"]
    path = folder / "pipeline_config.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_json(command: list[str], ok: Sequence[int] = (0,)) -> tuple[int, dict[str, Any]]:
    """Run a custseg command; its exit code and the JSON it printed."""
    done = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=600, check=False)
    if done.returncode not in ok:
        raise BenchError(f"{' '.join(command[1:3])} exited {done.returncode}: "
                         f"{done.stderr.strip()[-800:]}")
    try:
        return done.returncode, json.loads(done.stdout)
    except json.JSONDecodeError as exc:
        raise BenchError(f"{' '.join(command[1:3])}: stdout is not JSON: "
                         f"{done.stdout[:300]!r}") from exc


def train(config: Path) -> dict[str, Any]:
    _, execution = run_json([CUSTSEG, "run", "-c", str(config), "--json"])
    if execution.get("status") != "Succeeded" or not execution.get("model_uri"):
        raise BenchError(f"custseg run did not succeed: {execution}")
    return execution


@dataclass
class Replay:
    """One replay: what was changed, and what `custseg monitor` answered."""

    group: str  # null / null-busy / numeric / category / segment / real month
    name: str
    size: float | None  # the rung of its ladder (factor, IQRs, share), None otherwise
    rows: int
    exit_code: int = -1
    fired: list[str] = field(default_factory=list)  # checks that flagged
    alerts: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)


def monitor(config: Path, csv: Path) -> tuple[int, dict[str, Any]]:
    """`custseg monitor --data CSV --json --fail-on-drift`: exit 1 exactly when the
    report flags drift."""
    code, report = run_json([CUSTSEG, "monitor", ENDPOINT, "-c", str(config), "--data",
                             str(csv), "--json", "--fail-on-drift"], ok=(0, 1))
    if code != int(bool(report["drift"])):
        raise BenchError(f"monitor exited {code} for a report with drift={report['drift']}")
    return code, report


def fired_checks(report: dict[str, Any]) -> list[str]:
    """Which of CHECKS flagged, with the features behind a per-feature check."""
    out: list[str] = []
    per = {"psi": "feature PSI", "unseen": "unseen", "missing": "missing", "type": "schema"}
    for f in report["features"]:
        out += [f"{per[what]}: {f['feature']}" for what in f["drift"]]
    segments = report.get("segments") or {"drift": []}
    out += [f"segment {'chi2' if w == 'chi2' else 'PSI'}" for w in segments["drift"]]
    out += ["distance" for _ in (report.get("distance") or {"drift": []})["drift"]]
    out += [f"schema: {w}" for w in report["schema"]["drift"]]
    return out


def key_figures(report: dict[str, Any], column: str | None) -> dict[str, Any]:
    """The figures the tables show: the largest feature PSI (and whose), the changed
    column's PSI and unseen share, the segment PSI and p-value, the far share."""
    features = [f for f in report["features"] if f["psi"] is not None]
    top = max(features, key=lambda f: f["psi"])
    mine = next((f for f in features if f["feature"] == column), None)
    segments, distance = report.get("segments") or {}, report.get("distance") or {}
    return {"max_psi": top["psi"], "max_psi_feature": top["feature"],
            "psi": None if mine is None else mine["psi"],
            "unseen": None if mine is None else mine["unseen_share"],
            "max_unseen": max((f["unseen_share"] or 0.0) for f in features),
            "segment_psi": segments.get("psi"), "chi2_p": segments.get("p_value"),
            "segment_shares": segments.get("shares"), "far_share": distance.get("far_share")}


def judge(config: Path, folder: Path, replay: Replay, frame: pd.DataFrame,
          column: str | None = None) -> Replay:
    csv = folder / f"{replay.group}-{replay.name}.csv".replace(" ", "_").replace("/", "_")
    frame.to_csv(csv, index=False)
    replay.exit_code, report = monitor(config, csv)
    replay.fired, replay.alerts = fired_checks(report), list(report["alerts"])
    replay.figures = key_figures(report, column)
    csv.unlink()
    return replay


# -- the study ---------------------------------------------------------------------------

def null_replays(config: Path, folder: Path, held: pd.DataFrame, rows: int, group: str
                 ) -> list[Replay]:
    out = []
    for i in range(NULL_REPLAYS):
        replay = Replay(group, f"seed {NULL_SEED + i}", None, rows)
        out.append(judge(config, folder, replay, sample_month(held, rows, NULL_SEED + i)))
        print(f"  {group} {i + 1:2d}/{NULL_REPLAYS}: {', '.join(replay.fired) or '-'}",
              flush=True)
    return out


def shifted_replays(config: Path, folder: Path, held: pd.DataFrame, train_rows: pd.DataFrame,
                    labels: np.ndarray, segment: int) -> list[Replay]:
    base = sample_month(held, MONTH_ROWS, SHIFT_SEED)
    cases: list[tuple[Replay, pd.DataFrame, str | None]] = []
    for k in DURATION_FACTORS:
        cases.append((Replay("numeric", f"{DURATION} x{k:g}", k, MONTH_ROWS),
                      scale_numeric(base, DURATION, k), DURATION))
    for q in RATE_IQRS:
        cases.append((Replay("numeric", f"{RATE} +{q:g} IQR", q, MONTH_ROWS),
                      move_numeric(base, RATE, q, train_rows[RATE]), RATE))
    for s in NEW_SHARES:
        cases.append((Replay("category", f"{VISITOR}={NEW_VISITOR_TYPE} in {s:.0%}", s,
                             MONTH_ROWS),
                      new_category(base, VISITOR, NEW_VISITOR_TYPE, s, SHIFT_SEED), VISITOR))
    cases.append((Replay("category", f"{MONTH}={UNSEEN_MONTH} in 100%", 1.0, MONTH_ROWS),
                  new_category(base, MONTH, UNSEEN_MONTH, 1.0, SHIFT_SEED), MONTH))
    for k in SEGMENT_FACTORS:
        cases.append((Replay("segment", f"segment {segment} share x{k:g}", k, MONTH_ROWS),
                      segment_shift(held, labels, segment, k, MONTH_ROWS, SHIFT_SEED), None))
    out = []
    for replay, frame, column in cases:
        out.append(judge(config, folder, replay, frame, column))
        print(f"  {replay.name}: {', '.join(replay.fired) or '-'}", flush=True)
    return out


def month_replays(config: Path, folder: Path, held: pd.DataFrame) -> list[Replay]:
    """Context: the held-out rows of each real month (as they are, no resampling)."""
    out = []
    for month, rows in held.groupby(MONTH, sort=False):
        if len(rows) >= 100:
            replay = Replay("real month", f"held-out {month}", None, len(rows))
            out.append(judge(config, folder, replay, rows.reset_index(drop=True), MONTH))
            print(f"  {replay.name}: {', '.join(replay.fired) or '-'}", flush=True)
    return out


# -- tables ------------------------------------------------------------------------------

Rows = list[list[str]]
Section = tuple[str, list[str], Rows]


def _f(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _p(x: float | None) -> str:
    return "-" if x is None else f"{x:.2g}"


def _share(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def check_of(fired: str) -> str:
    return fired.split(":")[0]


def false_alarm_rows(replays: list[Replay]) -> Rows:
    n = len(replays)
    rows = []
    for check in CHECKS:
        hits = [r for r in replays if any(check_of(f) == check for f in r.fired)]
        rows.append([check, f"{len(hits)}/{n}", _share(len(hits) / n)])
    drifted = [r for r in replays if r.fired]
    rows.append(["any (exit code 1)", f"{len(drifted)}/{n}", _share(len(drifted) / n)])
    return rows


def null_figure_rows(replays: list[Replay]) -> Rows:
    """The null distribution of each figure against its threshold."""
    def spread(values: list[float], fmt: Any) -> list[str]:
        return [fmt(float(np.median(values))), fmt(max(values)), fmt(min(values))]

    fig = [r.figures for r in replays]
    return [
        ["largest feature PSI", *spread([f["max_psi"] for f in fig], _f), "> 0.2"],
        ["largest unseen share", *spread([f["max_unseen"] for f in fig], _share), "> 5%"],
        ["segment PSI", *spread([f["segment_psi"] for f in fig], _f), "> 0.2"],
        ["segment chi-square p", *spread([f["chi2_p"] for f in fig], _p), "< 0.001"],
        ["far share", *spread([f["far_share"] for f in fig], _share), "> 10%"],
    ]


def replay_rows(replays: list[Replay]) -> Rows:
    return [[r.group, r.name, f"{r.rows:,}", ", ".join(r.fired) or "-", str(r.exit_code),
             _f(r.figures["psi"]), _share(r.figures["unseen"]),
             f"{_f(r.figures['max_psi'])} ({r.figures['max_psi_feature']})",
             _f(r.figures["segment_psi"]), _p(r.figures["chi2_p"]),
             _share(r.figures["far_share"])] for r in replays]


REPLAY_HEADER = ["group", "replay", "rows", "checks fired", "exit", "PSI of the column",
                 "unseen", "largest PSI", "segment PSI", "chi2 p", "far share"]
TEXT_COLUMNS = {"group", "replay", "checks fired", "check", "figure", "target", "verdict"}


def markdown(sections: Sequence[Section]) -> str:
    return report_tables.markdown(sections, TEXT_COLUMNS)


def print_report(sections: Sequence[Section]) -> None:
    report_tables.print_report(sections, TEXT_COLUMNS, 220)


def verdicts(nulls: list[Replay], shifted: list[Replay], segment: int) -> Rows:
    """PASS/FAIL: each headline shift caught by the check meant for it; few false alarms."""
    def one(name: str) -> Replay:
        return next(r for r in shifted if r.name == name)

    wanted = [
        (one(f"{DURATION} x{HEADLINE['duration']:g}"), f"feature PSI: {DURATION}"),
        (one(f"{RATE} +{HEADLINE['rate']:g} IQR"), f"feature PSI: {RATE}"),
        (one(f"{VISITOR}={NEW_VISITOR_TYPE} in {HEADLINE['visitor']:.0%}"),
         f"unseen: {VISITOR}"),
        (one(f"{MONTH}={UNSEEN_MONTH} in 100%"), f"unseen: {MONTH}"),
        *[(one(f"segment {segment} share x{k:g}"), "segment chi2")
          for k in HEADLINE["segment"]],
    ]
    rows = [[f"{r.name}: {check}", "fired" if check in r.fired else "not fired", "fired",
             "PASS" if check in r.fired else "FAIL"] for r, check in wanted]
    alarms = sum(1 for r in nulls if r.fired)
    rows.append([f"false alarms, {len(nulls)} unshifted {MONTH_ROWS:,}-row replays",
                 str(alarms), f"<= {MAX_FALSE_ALARMS}",
                 "PASS" if alarms <= MAX_FALSE_ALARMS else "FAIL"])
    return rows


def plot_ladders(shifted: list[Replay], path: Path) -> None:
    """PSI (or p-value) against shift size, one panel per ladder, thresholds dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    panels = [
        ([r for r in shifted if r.name.startswith(DURATION)], "psi", f"{DURATION} x factor",
         "feature PSI", 0.2, False),
        ([r for r in shifted if r.name.startswith(RATE)], "psi", f"{RATE} + IQRs",
         "feature PSI", 0.2, False),
        ([r for r in shifted if r.name.startswith(VISITOR)], "psi",
         f"share of {VISITOR}={NEW_VISITOR_TYPE}", "feature PSI", 0.2, False),
        ([r for r in shifted if r.group == "segment"], "chi2_p", "segment share x factor",
         "chi-square p-value", 0.001, True),
    ]
    for ax, (rungs, key, xlabel, ylabel, threshold, log) in zip(axes, panels, strict=True):
        ax.plot([r.size for r in rungs], [max(r.figures[key], 1e-300) for r in rungs], "o-")
        ax.axhline(threshold, color="red", linestyle="--", linewidth=1,
                   label=f"monitor default {threshold:g}")
        if log:
            ax.set_yscale("log")
        if key == "psi" and rungs and rungs[0].group == "category":
            ax.plot([r.size for r in rungs], [r.figures["unseen"] for r in rungs], "s:",
                    label="unseen share (threshold 5%)")
            ax.axhline(0.05, color="orange", linestyle=":", linewidth=1)
        ax.legend(fontsize=7)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    fig.suptitle(f"custseg monitor on shifted {MONTH_ROWS:,}-row months of held-out "
                 "online-shoppers sessions (dashed: monitor defaults)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- main --------------------------------------------------------------------------------

def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="custseg monitor on shifted and unshifted "
                                                 "replays of held-out online-shoppers rows")
    parser.add_argument("--data", type=Path, default=None,
                        help=f"the online-shoppers CSV (default "
                             f"{SHIPPED.relative_to(BENCH_DIR.parent)}, else {SHARED})")
    parser.add_argument("--figure", type=Path, default=None,
                        help="where to write the ladders' PNG (default benchmarks/out/"
                             "bench_drift-<UTC time>.png)")
    return parser.parse_args(argv)


def find_data(given: Path | None) -> Path | None:
    if given is not None:
        return given if given.is_file() else None
    return next((p for p in (SHIPPED, SHARED) if p.is_file()), None)


def smallest_segment(labels: np.ndarray) -> int:
    return int(np.argmin(np.bincount(labels)))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    data = find_data(args.data)
    if data is None:
        print(f"skipped: no online-shoppers CSV at {args.data or f'{SHIPPED} or {SHARED}'}; "
              "pass --data PATH (UCI 'Online Shoppers Purchasing Intention', CC BY 4.0)",
              file=sys.stderr)
        return 2
    import custseg
    from bench_train import code_version, machine_info

    started = datetime.now(UTC)
    stamp = started.strftime("%Y-%m-%dT%H%M%SZ")
    context: dict[str, Any] = {
        "command": " ".join(["uv run --group bench python benchmarks/bench_drift.py", *argv]),
        "started_utc": started.isoformat(timespec="seconds"), "data": str(data),
        "code": code_version(), "machine": machine_info(),
    }
    frame = pd.read_csv(data)
    train_index, held_index = split_rows(len(frame), TRAIN_FRACTION, SPLIT_SEED)
    train_rows, held = frame.iloc[train_index], frame.iloc[held_index].reset_index(drop=True)
    work = Path(tempfile.mkdtemp(prefix="bench_drift-"))
    try:
        train_csv = work / "train.csv"
        train_rows.to_csv(train_csv, index=False)
        config = write_config(work, train_csv)
        print(f"training on {len(train_rows):,} rows; {len(held):,} held out ...", flush=True)
        execution = train(config)
        labels = np.asarray(custseg.load_model(execution["model_uri"]).predict(held))
        segment = smallest_segment(labels)
        print("unshifted replays ...", flush=True)
        nulls = null_replays(config, work, held, MONTH_ROWS, "null")
        busy = null_replays(config, work, held, BUSY_ROWS, "null-busy")
        print("shifted replays ...", flush=True)
        shifted = shifted_replays(config, work, held, train_rows, labels, segment)
        print("real months ...", flush=True)
        months = month_replays(config, work, held)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    metrics = execution["metrics"]
    setup = [
        ["rows (train / held out)", f"{len(train_rows):,} / {len(held):,}"],
        ["model", f"k={metrics['k']}, {metrics['space']}, silhouette "
                  f"{metrics['silhouette']['value']:.3f}"],
        ["segment shares, held-out rows",
         ", ".join(f"{i}: {s:.1%}" for i, s in
                   enumerate(np.bincount(labels) / len(labels)))],
        ["segment shifted", f"{segment} (the smallest)"],
        ["thresholds", json.dumps(execution["parameters"]["monitor"])],
    ]
    sections: list[Section] = [
        ("Setup", ["figure", "value"], setup),
        (f"False alarms: {NULL_REPLAYS} unshifted {MONTH_ROWS:,}-row replays",
         ["check", "replays flagged", "rate"], false_alarm_rows(nulls)),
        (f"False alarms: {NULL_REPLAYS} unshifted {BUSY_ROWS:,}-row replays",
         ["check", "replays flagged", "rate"], false_alarm_rows(busy)),
        (f"Figures over the {NULL_REPLAYS} unshifted {MONTH_ROWS:,}-row replays",
         ["figure", "median", "max", "min", "drift when"], null_figure_rows(nulls)),
        (f"Figures over the {NULL_REPLAYS} unshifted {BUSY_ROWS:,}-row replays",
         ["figure", "median", "max", "min", "drift when"], null_figure_rows(busy)),
        ("Shifted replays (one change each)", REPLAY_HEADER, replay_rows(shifted)),
        ("Real months (held-out rows of one month, as they are)", REPLAY_HEADER,
         replay_rows(months)),
        ("Targets", ["target", "value", "limit", "verdict"], verdicts(nulls, shifted, segment)),
    ]
    print_report(sections)
    OUT_DIR.mkdir(exist_ok=True)
    out = OUT_DIR / f"bench_drift-{stamp}.json"
    figure = args.figure or out.with_suffix(".png")
    plot_ladders(shifted, figure)
    report = {"benchmark": "bench_drift", **context, "execution": {
                  k: execution[k] for k in ("id", "metrics", "model_version")},
              "segment_shifted": segment,
              "replays": [asdict(r) for r in [*nulls, *busy, *shifted, *months]]}
    out.write_text(json.dumps(report, indent=2))
    header = (f"Command: `{context['command']}`; started {context['started_utc']}; commit "
              f"{context['code']['git_commit']}; {context['machine']['nproc']} cores "
              f"({context['machine']['cpu_model']}), {context['machine']['mem_total_gb']} GB\n\n")
    out.with_suffix(".md").write_text(header + markdown(sections))
    print(f"results written to {out}, {out.with_suffix('.md').name} and {figure}")
    return 0 if all(row[-1] == "PASS" for row in sections[-1][2]) else 1


if __name__ == "__main__":
    sys.exit(main())
