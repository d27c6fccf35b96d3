"""The warnings of a run: what a careful analyst would want to know before trusting the
segments. One list per run, printed after the metrics as `warning: ...` lines, stored
with the execution and the model, shown by `models describe` and atop the report.

Pure: the schema, the learned transform and the training result in, sentences out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from custseg.core.preprocessing import FeatureTransform
from custseg.core.schema import Schema

if TYPE_CHECKING:
    from custseg.config import Config
    from custseg.core.train import TrainResult

__all__ = ["LOW_VARIANCE", "MANY_LEVELS", "run_warnings"]

LOW_VARIANCE = 0.7  # PCA keeping less of the variance than this is worth a word
MANY_LEVELS = 20  # a categorical column with more levels makes a large one-hot block


def _names(names: list[str], limit: int = 6) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def run_warnings(schema: Schema, transform: FeatureTransform, result: TrainResult,
                 missing: dict[str, int], n: int, cfg: Config,
                 sizes: list[int]) -> list[str]:
    """The run's warnings; `sizes`: the segments' sizes by their final ids (after the
    ids were matched to the previous version)."""
    out: list[str] = []
    imputed = {c: m for c, m in missing.items() if m}
    if imputed:
        parts = [f"{c} {m:,} ({m / n:.1%})" for c, m in sorted(imputed.items(),
                                                              key=lambda x: -x[1])]
        out.append(f"imputed missing values (median or most frequent level): "
                   f"{_names(parts)}")
    targets = [c.name for c in schema.columns if c.role == "profile_only" and not c.declared]
    if targets:
        out.append(f"target-like column{'s' if len(targets) > 1 else ''} {_names(targets)} "
                   "kept out of distances (described in the profiles only); list them in "
                   "features.numeric or features.categorical to cluster on them")
    dropped = [c for c in schema.columns if c.role == "ignored" and not c.declared
               and "identifier" not in c.reason and c.reason != "not declared in features"]
    if dropped:
        out.append("ignored: " + _names([f"{c.name} ({c.reason})" for c in dropped], 4))
    forced = cfg.features.transforms  # a log the config asked for is no finding
    logged = [c for c, f in zip(transform.numeric, transform.functions, strict=True)
              if f != "none" and forced.get(c) != "log"]
    if logged:
        out.append(f"skewed column{'s' if len(logged) > 1 else ''} log-transformed: "
                   f"{_names(logged)} (features.transforms: {{COLUMN: none}} keeps one as is)")
    big = [f"{c} ({len(cats)} levels)" for c, cats in
           zip(transform.categorical, transform.categories, strict=True) if len(cats) > MANY_LEVELS]
    if big:
        out.append(f"large one-hot blocks: {_names(big)}")
    out += result.warnings
    tiny = [i for i, size in enumerate(sizes) if size / n < cfg.tuning.min_share]
    if tiny:
        out.append(f"segment{'s' if len(tiny) > 1 else ''} {', '.join(map(str, tiny))} "
                   f"hold{'s' if len(tiny) == 1 else ''} under {cfg.tuning.min_share * 100:g}% "
                   "of the customers")
    kept = float(result.projection.explained_variance_ratio.sum())
    if kept < LOW_VARIANCE:
        out.append(f"PCA keeps {kept:.0%} of the variance ({result.projection.n_components} "
                   f"component{'s' if result.projection.n_components > 1 else ''}): segments "
                   f"may miss what the rest holds; try n_components: auto (90%)")
    return out
