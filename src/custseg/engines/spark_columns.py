"""The feature transform as Spark expressions: what one row's columns become.

The counterpart of `core/preprocessing` (and `core/columns`) on Spark: a numeric column
read as a double the way Arrow reads it (text trimmed; booleans as 0/1; a date column
as days before its newest date, parsed with the schema's format as a Spark datetime
pattern), a categorical column as the text the local engine compares levels by, the
skew transforms, and the weighted one-hot feature matrix built from a `FeatureTransform`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from custseg.core.preprocessing import FeatureTransform
from custseg.engines.spark_data import SparkData, column

__all__ = ["Dates", "category", "days", "feature_columns", "forward", "java_pattern",
           "level_columns", "number", "original_columns"]


def _true_false() -> tuple[list[str], list[str]]:
    import pyarrow.csv as pacsv

    options = pacsv.ConvertOptions()
    return list(options.true_values), list(options.false_values)


Dates = dict[str, tuple[str, float]]  # date column -> (format, newest date in days)
_JAVA = {"%Y": "yyyy", "%m": "M", "%d": "d", "%H": "H", "%M": "m", "%S": "s", "%b": "MMM"}


def java_pattern(fmt: str) -> str:
    """A `schema.DATE_FORMATS` strptime format as a Spark datetime pattern (one-letter
    fields take one or two digits, as strptime does)."""
    if fmt == "%Y%m%d":
        return "yyyyMMdd"
    out, i = "", 0
    while i < len(fmt):
        if fmt[i] == "%":
            out += _JAVA[fmt[i:i + 2]]
            i += 2
        else:
            out += f"'{fmt[i]}'" if fmt[i].isalpha() else fmt[i]
            i += 1
    return out


def days(name: str, kind: pa.DataType, text: bool, fmt: str) -> Any:
    """Days since 1970-01-01 of a date column (null when missing or not a date), as
    `columns.date_days` reads them; the session's time zone is UTC (see spark_session)."""
    from pyspark.sql import functions as F

    c = column(name)
    if not text and (pa.types.is_date(kind) or pa.types.is_timestamp(kind)):
        stamp = c.cast("timestamp")
    elif fmt == "iso":
        stamp = F.trim(c).try_cast("timestamp")
    else:
        stamp = F.try_to_timestamp(F.trim(c), F.lit(java_pattern(fmt)))
    return F.unix_micros(stamp) / F.lit(86_400e6)


def number(name: str, kind: pa.DataType, text: bool, dates: Dates | None = None) -> Any:
    """Column `name` as a double (null when missing; null also for text that is not a
    number, which the checks find). A date column: days before its newest date."""
    from pyspark.sql import functions as F

    c = column(name)
    if dates and name in dates:
        fmt, newest = dates[name]
        return F.lit(newest) - days(name, kind, text, fmt)
    if text and pa.types.is_boolean(kind):
        true, false = _true_false()
        return F.when(c.isin(*true), F.lit(1.0)).when(c.isin(*false), F.lit(0.0))
    if text:
        return F.trim(c).try_cast("double")
    return c.cast("double")


def category(name: str, kind: pa.DataType, text: bool) -> Any:
    """Column `name` as the text the local engine compares categories by (Arrow's cast
    to string: 3 -> "3", 2.5 -> "2.5", true -> "true")."""
    from pyspark.sql import functions as F

    c = column(name)
    if pa.types.is_boolean(kind):
        if not text:
            return F.when(c, F.lit("true")).when(~c, F.lit("false"))
        true, false = _true_false()
        return F.when(c.isin(*true), F.lit("true")).when(c.isin(*false), F.lit("false")
                                                          ).otherwise(c)
    if pa.types.is_integer(kind):
        whole = (F.trim(c) if text else c).try_cast("bigint")
        return F.when(whole.isNotNull(), whole.cast("string")).otherwise(c.cast("string"))
    if pa.types.is_floating(kind):
        x = (F.trim(c) if text else c).try_cast("double")
        integral = (x == F.floor(x)) & (F.abs(x) < 1e15)
        return (F.when(integral, x.cast("bigint").cast("string"))
                .when(x.isNotNull(), x.cast("string")).otherwise(c.cast("string")))
    return c.cast("string")


def forward(x: Any, function: str, scale: float) -> Any:
    from pyspark.sql import functions as F

    if function == "log1p":
        return F.log1p(x / F.lit(scale))
    if function == "signed_log":
        return F.signum(x) * F.log1p(F.abs(x) / F.lit(scale))
    return x


def feature_columns(data: SparkData, transform: FeatureTransform, centre: np.ndarray
                    ) -> list[Any]:
    """The weighted one-hot feature matrix as Spark expressions, one per feature, minus
    `centre` (the features' means): what PCA is fitted on and z is projected from."""
    from pyspark.sql import functions as F

    kinds = {name: data.sample.schema.field(name).type
             for name in transform.numeric + transform.categorical}
    dates = {c: (fmt, transform.date_reference[c]) for c, fmt in transform.dates.items()}
    out = []
    for j, name in enumerate(transform.numeric):
        x = F.coalesce(number(name, kinds[name], data.text, dates),
                       F.lit(float(transform.medians[j])))
        lo, hi = float(transform.clip_low[j]), float(transform.clip_high[j])
        if np.isfinite(lo) or np.isfinite(hi):
            x = F.least(F.greatest(x, F.lit(lo)), F.lit(hi))
        v = forward(x, transform.functions[j], float(transform.log_scales[j]))
        out.append((v - F.lit(float(transform.means[j]))) / F.lit(float(transform.scales[j]))
                   - F.lit(float(centre[j])))
    for j, (name, off) in enumerate(zip(transform.categorical, transform.offsets, strict=True)):
        text = F.coalesce(category(name, kinds[name], data.text), F.lit(transform.modes[j]))
        w = float(transform.weights[j])
        for i, level in enumerate(transform.categories[j]):
            out.append(F.when(text == F.lit(level), F.lit(w)).otherwise(F.lit(0.0))
                       - F.lit(float(centre[off + i])))
    return out


def original_columns(data: SparkData, transform: FeatureTransform) -> list[Any]:
    """Each numeric column in original units, imputed and not clipped (what profiles
    report), as Spark expressions."""
    from pyspark.sql import functions as F

    kinds = {name: data.sample.schema.field(name).type for name in transform.numeric}
    dates = {c: (fmt, transform.date_reference[c]) for c, fmt in transform.dates.items()}
    return [F.coalesce(number(name, kinds[name], data.text, dates),
                       F.lit(float(transform.medians[j])))
            for j, name in enumerate(transform.numeric)]


def level_columns(data: SparkData, transform: FeatureTransform) -> list[Any]:
    """Each categorical column's level (missing values take the mode), as expressions."""
    from pyspark.sql import functions as F

    kinds = {name: data.sample.schema.field(name).type for name in transform.categorical}
    return [F.coalesce(category(name, kinds[name], data.text), F.lit(transform.modes[j]))
            for j, name in enumerate(transform.categorical)]
