"""The feature schema: which role each input column plays, and why.

Roles: `numeric` and `categorical` (used in distances), `date` (parsed, used as days
before the newest date, a numeric feature), `profile_only` (described in the profiles
and the report, not used in distances: target-like columns) and `ignored`. Columns the
config lists (`features.numeric`, `categorical`, `dates`, `profile_only`, `ignore`)
keep that role; when `numeric` or `categorical` is listed the rest is ignored ("not
declared"), otherwise the rest is inferred by these rules, in order:

1. identifiers: an id-like name (`id`, `*_id`, `*ID`, `*Id`, `customer_no`...), or
   integers or text that are distinct on (almost) every row;
2. no values, a constant column, or one value on at least 99% of rows (near-constant);
3. target-like names (`response`, `churn`, `default`, `label`, `target`, `y`, `class`,
   `outcome`, `converted`, `revenue` as a flag, `is_*`, ...) with at most two values:
   profile_only, kept out of distances;
4. dates and datetimes (typed by the CSV reader, or text that parses with one format,
   chosen from every distinct value): `date`; text of which 95% or more but not all
   parses (a word such as `unknown` among the dates) is ignored, with the reason: fitting
   would stop at the first such value;
5. booleans (true/false, and 0/1 integers): numeric 0/1;
6. integers: a code (categorical) when its values are few (<= `max_levels`), start at 1
   and have no gaps of more than one step (Channel 1-2, Region 1-3, Browser 1-13);
   otherwise numeric (counts start at 0, ordinal scales such as a -2..8 payment status
   or a 6..12 month tenure). Columns of one family (PAY_0 ... PAY_6, BILL_AMT1 ...
   BILL_AMT6) share one role: numeric when any member is;
7. floats and text of numbers: numeric;
8. text: categorical with at most `max_levels` distinct values, else ignored; numbers
   written for people (`$22,048.15`, a decimal comma, `33%`) are ignored with that reason,
   not parsed (a scored record would have to be parsed alike).

Pure: takes an Arrow table, returns a :class:`Schema`; no files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from custseg.config import Features
from custseg.core.columns import NUMBER, integers, take_sorted
from custseg.errors import DataError

__all__ = [
    "DATE_FORMATS",
    "NEAR_CONSTANT",
    "Column",
    "Role",
    "Schema",
    "identifier_by_name",
    "infer_schema",
]

Role = Literal["numeric", "categorical", "date", "ignored", "profile_only"]
NEAR_CONSTANT = 0.99  # one value on this share of rows or more: ignored when inferred
DATE_SHARE = 0.95  # share of values that parse for a text column to look like dates
DATE_FORMATS = (
    "%Y-%m-%d", "%d-%m-%Y", "%m-%d-%Y", "%d/%m/%Y", "%m/%d/%Y", "%Y/%m/%d", "%d.%m.%Y",
    "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%d-%m-%Y %H:%M", "%m/%d/%Y %H:%M",
    "%d/%m/%Y %H:%M", "%d-%b-%Y", "%d %b %Y", "%b %d %Y", "%Y%m%d",
)
ID_WORDS = frozenset({"id", "uuid", "guid", "key"})
NUMBER_WORDS = frozenset({"no", "nr", "num", "number"})
COUNT_WORDS = frozenset({
    "num", "number", "count", "n", "qty", "quantity", "visits", "purchases", "days", "months",
    "years", "age", "tenure", "items", "orders", "total", "amount", "amt", "kids", "children",
    "teens", "recency", "frequency", "times", "pages", "calls", "nights", "members", "size",
})
TARGET_WORDS = frozenset({
    "response", "responded", "churn", "churned", "default", "defaulted", "label", "target",
    "y", "class", "outcome", "converted", "conversion", "revenue", "purchased", "bought",
    "accepted", "fraud", "attrition", "exited", "subscribed", "left", "cancelled",
})
# text that is a number written for people: a currency sign, thousands separators, a
# decimal comma or a percent sign ($22,048.15, 16071,61, 1.234,56 €, 33%)
FORMATTED_NUMBER = (
    r"^\s*[-+]?\s*[$€£¥₹]?\s*[-+]?(\d{1,3}([,.' \x{a0}\x{202f}]\d{3})+|\d+)([.,]\d+)?"
    r"\s*[%$€£¥₹]?\s*$"
)
FAMILY = re.compile(r"^(.*?[A-Za-z])[_ .-]?(\d+)$")
_SAMPLE = 200_000


@dataclass(frozen=True)
class Column:
    """One input column's role and the reason for it (`date_format` for dates)."""

    name: str
    role: Role
    reason: str
    declared: bool = False
    date_format: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "role": self.role, "reason": self.reason,
                               "declared": self.declared}
        if self.date_format:
            out["date_format"] = self.date_format
        return out


@dataclass(frozen=True)
class Schema:
    """Every input column with its role. `numeric` includes date columns (used as numbers
    of days); `ignored` includes profile-only columns' complement: neither is scored."""

    columns: list[Column]
    inferred: bool

    def _names(self, *roles: str) -> list[str]:
        return [c.name for c in self.columns if c.role in roles]

    @property
    def numeric(self) -> list[str]:
        return self._names("numeric", "date")

    @property
    def categorical(self) -> list[str]:
        return self._names("categorical")

    @property
    def ignored(self) -> list[str]:
        return self._names("ignored")

    @property
    def profile_only(self) -> list[str]:
        return self._names("profile_only")

    @property
    def dates(self) -> dict[str, str]:
        return {c.name: c.date_format or "iso" for c in self.columns if c.role == "date"}

    @property
    def reasons(self) -> dict[str, str]:
        return {c.name: c.reason for c in self.columns}

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "numeric": self.numeric,
            "categorical": self.categorical,
            "ignored": self.ignored,
            "profile_only": self.profile_only,
            "inferred": self.inferred,
            "reasons": self.reasons,
            "columns": [c.to_dict() for c in self.columns],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Schema:
        if "columns" in d:
            cols = [Column(c["name"], c["role"], c.get("reason", ""), c.get("declared", False),
                           c.get("date_format")) for c in d["columns"]]
            return cls(cols, bool(d.get("inferred", False)))
        reasons = d.get("reasons", {})  # format 1: role lists and reasons
        roles: tuple[Role, ...] = ("numeric", "categorical", "ignored")
        cols = [Column(n, role, reasons.get(n, "")) for role in roles for n in d.get(role, [])]
        return cls(cols, bool(d.get("inferred", False)))


# -- the rules ---------------------------------------------------------------------------


def _words(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    return [w for w in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if w]


def _id_like(name: str) -> bool:
    words = _words(name)
    return bool(words) and (words[-1] in ID_WORDS or words[0] == "id" or (
        len(words) > 1 and words[-1] in NUMBER_WORDS))


def identifier_by_name(name: str) -> bool:
    """Whether inference ignores column `name` as an identifier whatever its values (its
    name says so): such a column need not be read at all (see `infer_schema`'s
    `header`)."""
    return _id_like(name)


def _target_like(name: str) -> bool:
    words = _words(name)
    return bool(words) and ((words[0] == "is" and len(words) > 1) or any(
        w in TARGET_WORDS for w in words))


def _sample(col: pa.ChunkedArray) -> pa.Array:
    values = col.drop_null() if col.null_count else col  # drop_null copies every row
    if len(values) <= _SAMPLE:
        return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    step = len(values) // _SAMPLE  # an even spread: rows are not assumed shuffled
    return take_sorted(values, np.arange(0, step * _SAMPLE, step))


def _top_share(counts: pa.StructArray, present: int) -> tuple[Any, float]:
    """The most frequent value and its share, from `value_counts` of the values."""
    freq = integers(counts.field("counts"))
    top = int(np.argmax(freq))
    return counts.field("values")[top].as_py(), float(freq[top]) / max(present, 1)


def _count_matching(counts: pa.StructArray, pattern: str) -> int:
    """How many of the counted values match `pattern`: each distinct value tested once
    (a text column has few levels, or it is ignored)."""
    hits = pc.match_substring_regex(counts.field("values"), pattern)
    return int(pc.sum(pc.filter(counts.field("counts"), hits)).as_py() or 0)


def _date_format(counts: pa.StructArray) -> tuple[str, int, str | None] | None:
    """The format of the counted text values, how many of them it leaves unparsed and the
    first of those; None when no format parses DATE_SHARE of them.

    Every distinct value is tried (a file sorted by date may show a day past 12 only in
    its last rows). A format that parses every value wins, the first in DATE_FORMATS
    (day-first before month-first) when several do; otherwise the one that parses most.
    Arrow's strptime only checks the layout: it takes 31-02-2012 for 2 March, which
    fitting then reports by row.
    """
    texts, weights = counts.field("values"), counts.field("counts")
    total = int(pc.sum(weights).as_py() or 0)
    if not total or _count_matching(counts, r"\d") < DATE_SHARE * total:
        return None
    probe = texts.slice(0, 2000)  # text that is no date fails every format here already
    formats = [fmt for fmt in DATE_FORMATS if pc.strptime(
        probe, format=fmt, unit="s", error_is_null=True).null_count <= (1 - DATE_SHARE) * len(
        probe)]
    best: tuple[str, int, str | None] | None = None
    for fmt in formats:
        failed = pc.is_null(pc.strptime(texts, format=fmt, unit="s", error_is_null=True))
        unparsed = int(pc.sum(pc.filter(weights, failed)).as_py() or 0)
        if unparsed == 0:
            return fmt, 0, None
        if unparsed <= (1 - DATE_SHARE) * total and (best is None or unparsed < best[1]):
            best = fmt, unparsed, pc.filter(texts, failed)[0].as_py()
    return best


def _numbers_as_text(counts: pa.StructArray) -> str:
    """The reason for ignoring text that holds numbers written for people, with the first
    such value."""
    texts = counts.field("values")
    written = pc.and_(pc.match_substring_regex(texts, FORMATTED_NUMBER),
                      pc.invert(pc.match_substring_regex(texts, NUMBER)))
    example = pc.filter(texts, written)[0].as_py()
    return (f"numbers written as text (e.g. {example!r}): ignored; write plain numbers such "
            "as 1234.56 (no currency sign, thousands separator, decimal comma or %)")


def _integer_role(name: str, distinct_values: pa.Array, max_levels: int
                  ) -> tuple[Role, str]:
    levels = np.sort(integers(distinct_values))
    distinct = len(levels)
    if distinct == 2 and set(levels.tolist()) == {0, 1}:
        return "numeric", "binary 0/1"
    gaps = np.diff(levels)
    counts = bool(COUNT_WORDS & set(_words(name)))
    if distinct <= max_levels and levels[0] == 1 and (gaps <= 2).all() and not counts:
        return "categorical", f"integer code with {distinct} values ({levels[0]}-{levels[-1]})"
    if levels[0] < 0:
        return "numeric", f"integer scale from {levels[0]} to {levels[-1]}"
    if distinct <= max_levels:
        return "numeric", f"integer with {distinct} values from {levels[0]} (a count or scale)"
    return "numeric", "integer"


def _infer_column(name: str, col: pa.ChunkedArray, n: int, max_levels: int) -> Column:
    t = col.type
    present = n - col.null_count
    if _id_like(name):
        return Column(name, "ignored", "identifier (by name)")
    if present == 0 or pa.types.is_null(t):
        return Column(name, "ignored", "no values at all")
    if pa.types.is_dictionary(t):
        col = pc.cast(col, pa.string())
        t = col.type
    values = _sample(col)  # no nulls
    counts = pc.value_counts(values)  # each distinct value once, with its count
    distinct = len(counts)
    if distinct == 1:
        return Column(name, "ignored", f"constant (every row is {values[0].as_py()!r})")
    top, share = _top_share(counts, len(values))
    if share >= NEAR_CONSTANT:
        return Column(name, "ignored",
                      f"near-constant ({share:.1%} of rows are {top!r})")
    if distinct <= 2 and _target_like(name):
        return Column(name, "profile_only", "target-like name: described, not clustered on")
    if pa.types.is_date(t) or pa.types.is_timestamp(t):
        return Column(name, "date", "date: used as days before the newest date",
                      date_format="iso")
    if pa.types.is_boolean(t):
        return Column(name, "numeric", "boolean, coded 0/1")
    if pa.types.is_integer(t):
        span = pc.max(values).as_py() - pc.min(values).as_py()
        if distinct > 0.95 * len(values) and len(values) > 50 and span < 2 * len(values):
            return Column(name, "ignored", f"identifier: {distinct:,} distinct integers "
                          "in a run")
        role, why = _integer_role(name, counts.field("values"), max_levels)
        return Column(name, role, why)
    if pa.types.is_floating(t):
        return Column(name, "numeric", "float")
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        if _count_matching(counts, NUMBER) >= 0.9 * len(values):
            return Column(name, "numeric", "mostly numbers")  # bad values reported by row
        found = _date_format(counts)
        if found is not None:
            fmt, unparsed, example = found
            if unparsed:  # fitting would stop at the first of them
                return Column(name, "ignored", f"dates ({fmt}), but {unparsed:,} of "
                              f"{len(values):,} values are not (e.g. {example!r}): ignored; "
                              "leave unknown dates empty or correct them")
            return Column(name, "date", f"date: parsed as {fmt}, used as days before the "
                          "newest date", date_format=fmt)
        if distinct > max_levels and _count_matching(counts, FORMATTED_NUMBER) >= (
                0.9 * len(values)):
            return Column(name, "ignored", _numbers_as_text(counts))
        if distinct > 50 and distinct > 0.5 * len(values):
            return Column(name, "ignored", f"identifier: {distinct:,} distinct text values")
        if distinct > max_levels:
            return Column(name, "ignored", f"categorical with {distinct:,} levels > max "
                          f"{max_levels} (features.max_levels): ignored")
        return Column(name, "categorical", f"text with {distinct} levels")
    return Column(name, "ignored", f"unsupported type {t}")


def _unify_families(columns: list[Column]) -> list[Column]:
    """Members of a numbered family (PAY_0..PAY_6) take one role: numeric when any
    member is numeric and the others are integer codes."""
    families: dict[str, list[int]] = {}
    for i, c in enumerate(columns):
        m = FAMILY.match(c.name)
        if m and not c.declared:
            families.setdefault(m.group(1), []).append(i)
    out = list(columns)
    for stem, members in families.items():
        if len(members) < 2:
            continue
        roles = {columns[i].role for i in members}
        if "numeric" in roles and "categorical" in roles:
            for i in members:
                if columns[i].role == "categorical":
                    out[i] = Column(columns[i].name, "numeric",
                                    f"integer, numeric like the rest of the {stem}* family")
    return out


def infer_schema(
    table: pa.Table,
    features: Features,
    source: str = "the data",
    header: list[str] | None = None,
) -> Schema:
    """The feature schema: the declared roles (checked against the data), the rest
    inferred. `header` names every column of the source when the table holds only some."""
    columns = header if header is not None else table.column_names
    declared_roles: dict[str, Role] = {}
    lists: list[tuple[str, list[str] | None, Role]] = [
        ("numeric", features.numeric, "numeric"),
        ("categorical", features.categorical, "categorical"),
        ("dates", features.dates, "date"),
        ("profile_only", features.profile_only, "profile_only"),
        ("ignore", features.ignore, "ignored"),
    ]
    for key, names, role in lists:
        for name in names or []:
            if name not in columns:
                raise DataError(
                    f"column {name!r} (declared in features.{key}) is missing from {source}; "
                    f"columns found: {', '.join(columns)}"
                )
            if name in declared_roles:
                raise DataError(f"column {name!r} is declared twice: as {declared_roles[name]} "
                                f"and in features.{key}")
            declared_roles[name] = role
    for name in features.transforms:
        if name not in columns:
            raise DataError(f"column {name!r} (in features.transforms) is missing from "
                            f"{source}; columns found: {', '.join(columns)}")
    exact = features.numeric is not None or features.categorical is not None
    out: list[Column] = []
    for name in columns:
        declared = declared_roles.get(name)
        if declared is not None:
            role = declared
            fmt = None
            if role == "date" and name in table.column_names:
                fmt = _declared_date_format(name, table.column(name), source)
            why = "features.ignore" if role == "ignored" else f"declared {role}"
            out.append(Column(name, role, why, declared=True, date_format=fmt))
        elif exact:
            out.append(Column(name, "ignored", "not declared in features"))
        elif name not in table.column_names:  # skipped when reading: no values to infer from
            out.append(Column(name, "ignored", "identifier (by name)") if _id_like(name)
                       else Column(name, "ignored", "not read"))
        else:
            out.append(_infer_column(name, table.column(name), table.num_rows,
                                     features.max_levels))
    schema = Schema(_unify_families(out), inferred=not exact)
    if not schema.numeric and not schema.categorical:
        raise DataError(f"no usable feature columns in {source}: "
                        + "; ".join(f"{c.name}: {c.reason}" for c in schema.columns))
    return schema


def _declared_date_format(name: str, col: pa.ChunkedArray, source: str) -> str:
    if pa.types.is_date(col.type) or pa.types.is_timestamp(col.type):
        return "iso"
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        found = _date_format(pc.value_counts(_sample(col)))
        if found is not None:
            return found[0]  # fitting names the rows it does not parse
    raise DataError(f"column {name!r} (declared in features.dates) in {source} is not a date "
                    f"in a known format (tried {', '.join(DATE_FORMATS)})")
