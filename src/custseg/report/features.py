"""The segment profiles as feature rows: one per numeric column and per category level,
labelled for people ("Region: North", with the model's value labels), with each
segment's value and standardised difference (z) and the whole population's value.

A two-level categorical column gets one row, the level that is not the population's mode:
its two levels' differences mirror each other, so the second row would add nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from custseg.core.profiles import category_label

__all__ = ["FeatureRow", "feature_label", "feature_rows", "segment_name", "z_by_feature"]

Kind = Literal["numeric", "category"]


def feature_label(name: str, categorical: set[str], value_labels: dict[str, Any] | None) -> str:
    """A one-hot feature name ("Region=North") as a label; other names as they are."""
    column, sep, level = name.partition("=")
    if sep and column in categorical:
        return category_label(column, level, value_labels)
    return name


def segment_name(profile: dict[str, Any]) -> str:
    return str(profile.get("name") or f"segment {profile.get('id', '?')}")


@dataclass(frozen=True)
class FeatureRow:
    key: str  # the profile's feature name: "Income", "Region=North"
    label: str
    kind: Kind
    column: str
    level: str | None
    z: dict[int, float]  # by segment id
    value: dict[int, float | None]  # the segment's mean (numeric) or share (category)
    overall: float | None  # the population's mean or share
    binary: bool = False  # a numeric 0/1 column: its mean is a share

    @property
    def as_share(self) -> bool:
        return self.kind == "category" or self.binary

    @property
    def strength(self) -> float:
        return max((abs(v) for v in self.z.values()), default=0.0)


def z_by_feature(profile: dict[str, Any]) -> dict[str, float]:
    """A profile's standardised differences by feature name ("Income", "Region=North")."""
    out: dict[str, float] = {}
    for d in profile.get("differences") or []:
        if d.get("kind") == "numeric":
            out[str(d["feature"])] = float(d["z"])
        else:
            column, _, level = str(d["feature"]).partition("=")
            column, level = str(d.get("column", column)), str(d.get("category", level))
            out[f"{column}={level}"] = float(d["z"])
    return out


def _weighted(pairs: list[tuple[int, float | None]]) -> float | None:
    known = [(w, v) for w, v in pairs if v is not None]
    total = sum(w for w, _ in known)
    return sum(w * v for w, v in known) / total if total else None


def feature_rows(segments: list[dict[str, Any]], value_labels: dict[str, Any] | None = None
                 ) -> list[FeatureRow]:
    """Every feature row, the strongest first (largest |z| over the segments)."""
    diffs = {int(p["id"]): z_by_feature(p) for p in segments}
    sizes = {int(p["id"]): int(p.get("size", 0)) for p in segments}
    numeric: dict[str, None] = {}
    binary = {str(c) for p in segments for c in p.get("binary_numeric") or []}
    levels: dict[str, dict[str, None]] = {}
    for p in segments:
        numeric.update(dict.fromkeys(p.get("numeric") or {}))
        for column, shares in (p.get("categorical") or {}).items():
            levels.setdefault(column, {}).update(dict.fromkeys(shares))
    rows: list[FeatureRow] = []
    for column in numeric:
        value = {int(p["id"]): (p.get("numeric") or {}).get(column, {}).get("mean")
                 for p in segments}
        rows.append(FeatureRow(
            column, column, "numeric", column, None,
            {s: d.get(column, 0.0) for s, d in diffs.items()}, value,
            _weighted([(sizes[s], v) for s, v in value.items()]), column in binary))
    for column, found in levels.items():
        by_level: list[FeatureRow] = []
        for level in found:
            key = f"{column}={level}"
            value = {int(p["id"]): (p.get("categorical") or {}).get(column, {}).get(level)
                     for p in segments}
            by_level.append(FeatureRow(
                key, category_label(column, level, value_labels), "category", column, level,
                {s: d.get(key, 0.0) for s, d in diffs.items()}, value,
                _weighted([(sizes[s], v) for s, v in value.items()])))
        if len(by_level) == 2:
            mode = max(by_level, key=lambda r: r.overall or 0.0)
            by_level.remove(mode)
        rows += by_level
    rows.sort(key=lambda r: -r.strength)  # stable: ties keep the columns' order
    return rows
