"""Schema inference: each rule of `custseg.core.schema` on small Arrow tables built here.

Every table carries a float `spend` column beside the columns under test, so that there
is always something to cluster on; `make_table` builds it.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from custseg.config import Features
from custseg.core.preprocessing import fit_features
from custseg.core.schema import Schema, infer_schema
from custseg.errors import DataError
from custseg.io.data import read_data

N = 400
Builder = Callable[[np.random.Generator, int], Any]  # builds one column's values


@pytest.fixture
def make_table() -> Callable[..., pa.Table]:
    """Factory: `make_table(n=400, seed=0, Name=values_or_builder, ...)`: a table of
    `n` rows with a log-normal `spend` column and the columns given (arrays, or
    callables of (rng, n))."""

    def make(n: int = N, seed: int = 0, **columns: Any) -> pa.Table:
        rng = np.random.default_rng(seed)
        data: dict[str, Any] = {"spend": rng.lognormal(4, 0.5, n)}
        for name, values in columns.items():
            data[name] = values(rng, n) if callable(values) else values
        return pa.table(data)

    return make


def levels(low: int, high: int) -> Builder:
    """Every integer from low to high, each about as often, shuffled (all present)."""
    return lambda rng, n: rng.permutation(np.arange(n) % (high - low + 1) + low)


def dates(n: int, rng: np.random.Generator, start: dt.date = dt.date(2012, 1, 1),
          span: int = 300) -> list[dt.date]:
    return [start + dt.timedelta(days=int(d)) for d in rng.integers(0, span, n)]


def role(schema: Schema, name: str) -> str:
    return schema.column(name).role


# -- 1. identifiers ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["CustomerID", "user_id", "Invoice No", "InvoiceNo", "userId",
                                  "ID", "customer_no", "order_key", "guid"])
def test_identifiers_by_name_are_ignored_whatever_their_values(
        make_table: Callable[..., pa.Table], name: str) -> None:
    table = make_table(**{name: levels(1, 5)})  # values alone would make a 1-5 code
    schema = infer_schema(table, Features())
    assert role(schema, name) == "ignored"
    assert schema.reasons[name] == "identifier (by name)"


@pytest.mark.parametrize("name", ["Paid", "Idle", "Valid", "Identity", "No"])
def test_names_that_merely_contain_id_or_no_are_not_identifiers(
        make_table: Callable[..., pa.Table], name: str) -> None:
    schema = infer_schema(make_table(**{name: levels(1, 5)}), Features())
    assert role(schema, name) == "categorical"


@pytest.mark.parametrize("values", [
    pytest.param(lambda rng, n: np.arange(n) + 10_000, id="ascending-run"),
    pytest.param(lambda rng, n: rng.permutation(n), id="shuffled-run"),
    pytest.param(lambda rng, n: rng.permutation(np.arange(0, 2 * n, 2))[: n] + 7, id="even-run"),
])
def test_a_run_of_distinct_integers_is_an_identifier(make_table: Callable[..., pa.Table],
                                                     values: Builder) -> None:
    schema = infer_schema(make_table(row=values), Features())
    assert role(schema, "row") == "ignored"
    assert f"identifier: {N} distinct integers in a run" == schema.reasons["row"]


def test_distinct_integers_spread_far_apart_stay_numeric(
        make_table: Callable[..., pa.Table]) -> None:
    table = make_table(value=lambda rng, n: rng.choice(10**7, n, replace=False))
    schema = infer_schema(table, Features())  # a measurement, not a row number
    assert (role(schema, "value"), schema.reasons["value"]) == ("numeric", "integer")


def test_a_run_on_few_rows_is_too_little_evidence_for_an_identifier(
        make_table: Callable[..., pa.Table]) -> None:
    table = make_table(n=40, value=lambda rng, n: np.arange(n) + 100)
    assert role(infer_schema(table, Features()), "value") == "numeric"


def test_mostly_distinct_text_is_an_identifier(make_table: Callable[..., pa.Table]) -> None:
    table = make_table(email=[f"user{i}@example.com" for i in range(N)])
    schema = infer_schema(table, Features())
    assert role(schema, "email") == "ignored"
    assert schema.reasons["email"] == f"identifier: {N} distinct text values"


# -- 2. empty, constant and near-constant columns ----------------------------------------


@pytest.mark.parametrize(("values", "reason"), [
    (np.full(N, 3), "constant (every row is 3)"),
    (np.full(N, 2.5), "constant (every row is 2.5)"),
    (["x"] * N, "constant (every row is 'x')"),
    (np.ones(N, dtype=bool), "constant (every row is True)"),
    ([7] * (N - 50) + [None] * 50, "constant (every row is 7)"),  # missing values aside
    (pa.nulls(N, pa.float64()), "no values at all"),
    (pa.nulls(N), "no values at all"),
])
def test_constant_columns_are_ignored_and_training_goes_on(
        make_table: Callable[..., pa.Table], values: Any, reason: str) -> None:
    table = make_table(c=values)
    schema = infer_schema(table, Features())
    assert role(schema, "c") == "ignored"
    assert schema.reasons["c"] == reason
    transform, enc = fit_features(table, schema)  # never a failure when inferred
    assert transform.numeric == ["spend"] and transform.categorical == []
    assert enc.num.shape == (N, 1)


@pytest.mark.parametrize(("others", "ignored"), [
    (1, True),  # 99.75% one value
    (4, True),  # exactly 99.0%: the threshold is inclusive
    (5, False),  # 98.75%
])
@pytest.mark.parametrize("kind", ["int", "float", "text"])
def test_near_constant_columns_are_ignored_at_99_percent(
        make_table: Callable[..., pa.Table], others: int, ignored: bool, kind: str) -> None:
    base = np.zeros(N)
    base[:others] = np.arange(1, others + 1)  # a few distinct other values
    values: Any = {"int": base.astype(np.int64), "float": base,
                   "text": [f"v{int(v)}" for v in base]}[kind]
    table = make_table(c=values)
    schema = infer_schema(table, Features())
    assert (role(schema, "c") == "ignored") is ignored
    if ignored:
        assert schema.reasons["c"].startswith("near-constant (")
        fit_features(table, schema)


# -- 4. dates ----------------------------------------------------------------------------


@pytest.mark.parametrize(("values", "fmt"), [
    pytest.param(lambda rng, n: pa.array(dates(n, rng), pa.date32()), "iso", id="date32"),
    pytest.param(lambda rng, n: pa.array(
        [dt.datetime(2012, 1, 1, 8) + dt.timedelta(hours=int(h)) for h in
         rng.integers(0, 5000, n)], pa.timestamp("s")), "iso", id="timestamp"),
    pytest.param(lambda rng, n: [d.strftime("%d-%m-%Y") for d in dates(n, rng)],
                 "%d-%m-%Y", id="day-first"),
    pytest.param(lambda rng, n: ["04-09-2012"] * (n // 2)
                 + [d.strftime("%d-%m-%Y") for d in dates(n - n // 2, rng)],
                 "%d-%m-%Y", id="04-09-2012"),
    pytest.param(lambda rng, n: [d.strftime("%Y-%m-%d") for d in dates(n, rng)],
                 "%Y-%m-%d", id="iso-text"),
    pytest.param(lambda rng, n: [d.strftime("%m-%d-%Y") for d in dates(n, rng)],
                 "%m-%d-%Y", id="month-first"),  # days past 12 rule out day-first
    pytest.param(lambda rng, n: [d.strftime("%d/%m/%Y") for d in dates(n, rng)],
                 "%d/%m/%Y", id="slashes"),
    pytest.param(lambda rng, n: [None if i % 10 == 0 else d.strftime("%d-%m-%Y")
                                 for i, d in enumerate(dates(n, rng))],
                 "%d-%m-%Y", id="some-missing"),
])
def test_dates_typed_or_text_become_date_columns(make_table: Callable[..., pa.Table],
                                                 values: Builder, fmt: str) -> None:
    table = make_table(joined=values)
    schema = infer_schema(table, Features())
    col = schema.column("joined")
    assert (col.role, col.date_format) == ("date", fmt)
    assert schema.dates == {"joined": fmt}
    assert "joined" in schema.numeric  # used as a number of days
    transform, enc = fit_features(table, schema)
    assert transform.dates == {"joined": fmt}
    assert np.isfinite(enc.num).all()


def test_text_04_09_2012_reads_day_first() -> None:
    table = pa.table({"spend": [1.0, 2.0, 3.0], "d": ["04-09-2012", "05-09-2012", None]})
    schema = infer_schema(table, Features())
    assert schema.column("d").date_format == "%d-%m-%Y"
    transform, _ = fit_features(table, schema)
    newest = (dt.date(2012, 9, 5) - dt.date(1970, 1, 1)).days  # 5 September, not 9 May
    assert transform.date_reference == {"d": newest}


SPOIL_ROWS = (5, 17)  # 2 of 400 values (0.5%) do not parse


def spoil(bad: str) -> Builder:
    """Day-first dates with `bad` on the SPOIL_ROWS."""
    def spoiled(rng: np.random.Generator, n: int) -> list[str]:
        text = [d.strftime("%d-%m-%Y") for d in dates(n, rng)]
        for row in SPOIL_ROWS:
            text[row] = bad
        return text

    return spoiled


@pytest.mark.parametrize("bad", [
    "2012-13-45",  # another layout
    "45-01-2012",  # day out of range
    "n/a",
    "unknown",
])
def test_dates_with_a_few_values_that_do_not_parse_are_ignored_with_the_reason(
        make_table: Callable[..., pa.Table], bad: str) -> None:
    table = make_table(joined=spoil(bad))
    schema = infer_schema(table, Features())
    assert (role(schema, "joined"), schema.reasons["joined"]) == (
        "ignored", f"dates (%d-%m-%Y), but 2 of {N} values are not (e.g. '{bad}'): ignored; "
                   "leave unknown dates empty or correct them")
    transform, _ = fit_features(table, schema)  # training does not stop at them
    assert transform.numeric == ["spend"]


def test_an_impossible_day_keeps_the_column_a_date_and_fit_names_the_row(
        make_table: Callable[..., pa.Table]) -> None:
    # a date in the column's layout that the calendar lacks is a data error, named by row
    # (pyarrow's strptime would roll it over to 2 March)
    table = make_table(joined=spoil("31-02-2012"))
    schema = infer_schema(table, Features())
    assert (role(schema, "joined"), schema.column("joined").date_format) == ("date", "%d-%m-%Y")
    first = SPOIL_ROWS[0] + 1
    with pytest.raises(DataError, match=rf"'joined' should be a date \(%d-%m-%Y\), but row "
                                        rf"{first} holds '31-02-2012'"):
        fit_features(table, schema)


def test_many_unparseable_dates_are_not_a_date(make_table: Callable[..., pa.Table]) -> None:
    def spoiled(rng: np.random.Generator, n: int) -> list[str]:
        text = [d.strftime("%d-%m-%Y") for d in dates(n, rng)]
        return [("2012-13-45" if i % 10 == 0 else t) for i, t in enumerate(text)]  # 10%

    schema = infer_schema(make_table(joined=spoiled), Features())
    assert role(schema, "joined") != "date"


def test_a_declared_date_column_that_is_no_date_is_a_data_error(
        make_table: Callable[..., pa.Table]) -> None:
    table = make_table(joined=["soon"] * N)
    with pytest.raises(DataError, match=r"'joined' \(declared in features.dates\) .* is not a "
                                        r"date in a known format"):
        infer_schema(table, Features(dates=["joined"]))


# -- 5, 6. booleans, integer codes, counts and scales ------------------------------------


@pytest.mark.parametrize(("name", "values", "reason"), [
    ("Weekend", lambda rng, n: rng.random(n) < 0.3, "boolean, coded 0/1"),
    ("Weekend", lambda rng, n: (rng.random(n) < 0.3).astype(np.int64), "binary 0/1"),
    ("Married", levels(0, 1), "binary 0/1"),
])
def test_booleans_are_numeric_flags(make_table: Callable[..., pa.Table], name: str,
                                    values: Builder, reason: str) -> None:
    table = make_table(**{name: values})
    schema = infer_schema(table, Features())
    assert (role(schema, name), schema.reasons[name]) == ("numeric", reason)
    _, enc = fit_features(table, schema)
    assert len(np.unique(enc.num[:, schema.numeric.index(name)])) == 2


@pytest.mark.parametrize(("name", "values", "expected", "reason"), [
    ("Channel", levels(1, 2), "categorical", "integer code with 2 values (1-2)"),
    ("Region", levels(1, 3), "categorical", "integer code with 3 values (1-3)"),
    ("Browser", levels(1, 13), "categorical", "integer code with 13 values (1-13)"),
    ("Grade", lambda rng, n: rng.choice([1, 2, 4, 6], n), "categorical",
     "integer code with 4 values (1-6)"),  # gaps of one missing step are still a code
    ("Visits", levels(0, 39), "numeric", "integer"),  # a count starts at 0
    ("Rooms", levels(0, 5), "numeric", "integer with 6 values from 0 (a count or scale)"),
    ("tenure", levels(6, 12), "numeric", "integer with 7 values from 6 (a count or scale)"),
    ("Kids", levels(1, 4), "numeric", "integer with 4 values from 1 (a count or scale)"),
    ("Status", levels(-2, 8), "numeric", "integer scale from -2 to 8"),
    ("Stars", lambda rng, n: rng.choice([1, 2, 5], n), "numeric",
     "integer with 3 values from 1 (a count or scale)"),  # a gap of 3: not a code
    ("Level", levels(1, 25), "numeric", "integer"),  # more than max_levels
])
def test_integer_codes_are_categorical_and_counts_or_scales_numeric(
        make_table: Callable[..., pa.Table], name: str, values: Builder, expected: str,
        reason: str) -> None:
    schema = infer_schema(make_table(**{name: values}), Features())
    assert (role(schema, name), schema.reasons[name]) == (expected, reason)


@pytest.mark.parametrize(("max_levels", "expected"), [(20, "categorical"), (12, "numeric"),
                                                      (13, "categorical")])
def test_max_levels_bounds_an_integer_code(make_table: Callable[..., pa.Table],
                                           max_levels: int, expected: str) -> None:
    schema = infer_schema(make_table(Browser=levels(1, 13)), Features(max_levels=max_levels))
    assert role(schema, "Browser") == expected


PAY = ["PAY_0", "PAY_2", "PAY_3", "PAY_4", "PAY_5", "PAY_6"]


def pay_table(n: int = N, seed: int = 0, coded: tuple[str, ...] = ("PAY_4", "PAY_6")
              ) -> pa.Table:
    """PAY_0 ... PAY_6 with values -2..8, but the `coded` members happen to hold 1..9."""
    rng = np.random.default_rng(seed)
    data: dict[str, Any] = {"spend": rng.lognormal(4, 0.5, n)}
    for name in PAY:
        data[name] = levels(1, 9)(rng, n) if name in coded else levels(-2, 8)(rng, n)
    return pa.table(data)


def test_a_numbered_family_shares_one_role() -> None:
    table = pay_table()
    schema = infer_schema(table, Features())
    assert schema.numeric == ["spend", *PAY]
    assert schema.categorical == []
    for name in ("PAY_4", "PAY_6"):
        assert schema.reasons[name] == "integer, numeric like the rest of the PAY* family"
    transform, _ = fit_features(table, schema)
    assert transform.numeric == ["spend", *PAY]


def test_the_family_rule_is_what_makes_the_coded_members_numeric() -> None:
    table = pay_table().rename_columns(["spend", "PAY_0", "PAY_2", "PAY_3", "Delay", "PAY_5",
                                        "PAY_6"])  # PAY_4 out of the family
    schema = infer_schema(table, Features())
    assert role(schema, "Delay") == "categorical"
    assert role(schema, "PAY_6") == "numeric"


def test_a_family_of_codes_stays_categorical() -> None:
    schema = infer_schema(pay_table(coded=tuple(PAY)), Features())
    assert schema.categorical == PAY


# -- 3. target-like columns --------------------------------------------------------------


@pytest.mark.parametrize(("name", "values"), [
    ("Response", levels(0, 1)),
    ("default.payment.next.month", levels(0, 1)),
    ("Revenue", lambda rng, n: rng.random(n) < 0.15),
    ("is_active", levels(0, 1)),
    ("isActive", lambda rng, n: rng.random(n) < 0.5),
    ("Churn", lambda rng, n: rng.choice(["Yes", "No"], n).tolist()),
    ("y", lambda rng, n: rng.choice(["yes", "no"], n).tolist()),
    ("Class", levels(1, 2)),
])
def test_target_like_columns_are_profile_only(make_table: Callable[..., pa.Table], name: str,
                                              values: Builder) -> None:
    table = make_table(**{name: values})
    schema = infer_schema(table, Features())
    assert role(schema, name) == "profile_only"
    assert schema.profile_only == [name]
    assert "target-like" in schema.reasons[name]
    transform, _ = fit_features(table, schema)
    assert name not in transform.numeric + transform.categorical  # not clustered on


@pytest.mark.parametrize(("name", "values", "expected"), [
    ("Revenue", lambda rng, n: rng.gamma(2, 50, n), "numeric"),  # money, not a flag
    ("Response", levels(1, 3), "categorical"),  # three values: not a yes/no target
    ("Active", levels(0, 1), "numeric"),  # no target word
])
def test_target_words_with_more_than_two_values_are_features(
        make_table: Callable[..., pa.Table], name: str, values: Builder, expected: str) -> None:
    assert role(infer_schema(make_table(**{name: values}), Features()), name) == expected


# -- 8. text -----------------------------------------------------------------------------


def test_high_cardinality_text_is_ignored_with_the_limit_named(
        make_table: Callable[..., pa.Table]) -> None:
    def cities(rng: np.random.Generator, n: int) -> list[str]:
        return [f"city{i}" for i in rng.permutation(np.arange(n) % 663)]

    table = make_table(n=5000, City=cities)  # 663 levels, about 7.5 rows each
    schema = infer_schema(table, Features())
    assert role(schema, "City") == "ignored"
    assert "663 levels" in schema.reasons["City"]
    assert "max 20" in schema.reasons["City"]
    assert "features.max_levels" in schema.reasons["City"]
    assert role(infer_schema(table, Features(max_levels=700)), "City") == "categorical"


@pytest.mark.parametrize(("values", "expected", "reason"), [
    (lambda rng, n: rng.choice(["Jan", "Feb", "Mar"], n).tolist(), "categorical",
     "text with 3 levels"),
    (lambda rng, n: [f"{x:.2f}" for x in rng.normal(size=n)], "numeric", "mostly numbers"),
    (lambda rng, n: pa.array(rng.choice(["a", "b"], n)).dictionary_encode(), "categorical",
     "text with 2 levels"),
])
def test_text_columns(make_table: Callable[..., pa.Table], values: Builder, expected: str,
                      reason: str) -> None:
    schema = infer_schema(make_table(t=values), Features())
    assert (role(schema, "t"), schema.reasons["t"]) == (expected, reason)


def test_mostly_numeric_text_is_numeric_and_fit_names_the_first_word(
        make_table: Callable[..., pa.Table]) -> None:
    def codes(rng: np.random.Generator, n: int) -> list[str]:
        text = [str(v) for v in rng.integers(100, 999, n)]
        for row in range(3, n, 20):  # 5% are not numbers
            text[row] = f"{text[row]}A"
        return text

    table = make_table(code=codes)
    schema = infer_schema(table, Features())
    assert (role(schema, "code"), schema.reasons["code"]) == ("numeric", "mostly numbers")
    bad = table.column("code")[3].as_py()
    with pytest.raises(DataError, match=rf"'code' should be numeric, but row 4 holds '{bad}'"):
        fit_features(table, schema)


# -- declared roles ----------------------------------------------------------------------


@pytest.fixture
def mixed_table(make_table: Callable[..., pa.Table]) -> pa.Table:
    return make_table(
        CustomerID=np.arange(N), Channel=levels(1, 2), Visits=levels(0, 39),
        Response=levels(0, 1),
        joined=lambda rng, n: [d.strftime("%d-%m-%Y") for d in dates(n, rng)],
    )


@pytest.mark.parametrize(("features", "expected", "inferred"), [
    (Features(), {"spend": "numeric", "CustomerID": "ignored", "Channel": "categorical",
                  "Visits": "numeric", "Response": "profile_only", "joined": "date"}, True),
    (Features(numeric=["Channel", "CustomerID"], categorical=["Visits"]),
     {"spend": "ignored", "CustomerID": "numeric", "Channel": "numeric",
      "Visits": "categorical", "Response": "ignored", "joined": "ignored"}, False),
    (Features(categorical=["Response"], dates=["joined"]),
     {"spend": "ignored", "CustomerID": "ignored", "Channel": "ignored",
      "Visits": "ignored", "Response": "categorical", "joined": "date"}, False),
    (Features(profile_only=["Visits"], ignore=["Channel"], numeric=None),
     {"spend": "numeric", "CustomerID": "ignored", "Channel": "ignored",
      "Visits": "profile_only", "Response": "profile_only", "joined": "date"}, True),
    (Features(ignore=["joined", "spend"]),
     {"spend": "ignored", "CustomerID": "ignored", "Channel": "categorical",
      "Visits": "numeric", "Response": "profile_only", "joined": "ignored"}, True),
])
def test_declared_roles_win_over_inference(mixed_table: pa.Table, features: Features,
                                           expected: dict[str, str], inferred: bool) -> None:
    schema = infer_schema(mixed_table, features)
    assert {c.name: c.role for c in schema.columns} == expected
    assert schema.inferred is inferred
    declared = {*(features.numeric or []), *(features.categorical or []), *features.dates,
                *features.profile_only, *features.ignore}
    for col in schema.columns:
        assert col.declared is (col.name in declared)
        if col.name in features.ignore:
            assert col.reason == "features.ignore"
        elif col.declared:
            assert col.reason == f"declared {col.role}"
        elif not inferred:
            assert col.reason == "not declared in features"
    if "joined" in features.dates:
        assert schema.column("joined").date_format == "%d-%m-%Y"
    fit_features(mixed_table, schema)


@pytest.mark.parametrize("features", [
    Features(numeric=["Visits"], categorical=["Visits"]),
    Features(numeric=["Visits"], ignore=["Visits"]),
    Features(categorical=["Channel"], profile_only=["Channel"]),
    Features(dates=["joined"], numeric=["joined"]),
    Features(profile_only=["Response"], ignore=["Response"]),
    Features(numeric=["Visits", "Visits"]),
])
def test_a_column_declared_twice_is_a_data_error(mixed_table: pa.Table,
                                                 features: Features) -> None:
    with pytest.raises(DataError, match=r"column '(Visits|Channel|joined|Response)' is "
                                        r"declared twice"):
        infer_schema(mixed_table, features)


@pytest.mark.parametrize(("features", "key"), [
    (Features(transforms={"Income": "log"}), "features.transforms"),
    (Features(numeric=["spend"], transforms={"Income": "none"}), "features.transforms"),
    (Features(dates=["Income"]), "features.dates"),
    (Features(profile_only=["Income"]), "features.profile_only"),
])
def test_a_missing_column_named_in_features_is_a_data_error(
        mixed_table: pa.Table, features: Features, key: str) -> None:
    with pytest.raises(DataError, match=rf"'Income' \((declared )?in {key}\) is missing from "
                                        r"the data; columns found: spend, CustomerID"):
        infer_schema(mixed_table, features)


def test_a_header_wider_than_the_table_marks_unread_columns(mixed_table: pa.Table) -> None:
    header = [*mixed_table.column_names, "Notes"]
    schema = infer_schema(mixed_table, Features(), header=header)
    assert (role(schema, "Notes"), schema.reasons["Notes"]) == ("ignored", "not read")


def test_no_usable_column_is_a_data_error_listing_the_reasons(
        make_table: Callable[..., pa.Table]) -> None:
    table = pa.table({"CustomerID": np.arange(N), "c": np.full(N, 3)})
    with pytest.raises(DataError, match=r"no usable feature columns in the data: CustomerID: "
                                        r"identifier \(by name\); c: constant"):
        infer_schema(table, Features())


# -- the saved form ----------------------------------------------------------------------


def test_schema_round_trips_through_json(mixed_table: pa.Table) -> None:
    schema = infer_schema(mixed_table, Features(profile_only=["Visits"], ignore=["Channel"]))
    assert {c.role for c in schema.columns} == {"numeric", "ignored", "profile_only", "date"}
    saved = json.loads(json.dumps(schema.to_dict()))
    assert Schema.from_dict(saved) == schema
    assert saved["numeric"] == ["spend", "joined"]  # dates are used as numbers
    assert saved["profile_only"] == ["Visits", "Response"]
    assert saved["columns"][-1]["date_format"] == "%d-%m-%Y"


def test_a_format_1_schema_dict_still_loads() -> None:
    old = {"numeric": ["Age", "Income"], "categorical": ["Gender"], "ignored": ["CustomerID"],
           "inferred": True, "reasons": {"Age": "float", "Income": "float",
                                         "Gender": "text with 3 levels",
                                         "CustomerID": "identifier"}}
    schema = Schema.from_dict(old)
    assert schema.inferred
    assert (schema.numeric, schema.categorical, schema.ignored) == (
        ["Age", "Income"], ["Gender"], ["CustomerID"])
    assert (schema.profile_only, schema.dates) == ([], {})
    assert schema.reasons == old["reasons"]
    assert not any(c.declared for c in schema.columns)
    again = Schema.from_dict(schema.to_dict())
    assert again == schema


@pytest.mark.parametrize("seed", range(3))
def test_counting_matches_per_distinct_value_equals_per_row(seed: int) -> None:
    """Numbers in text are counted once per distinct value, weighted by its count."""
    import pyarrow.compute as pc

    from custseg.core.columns import NUMBER
    from custseg.core.schema import _count_matching

    rng = np.random.default_rng(seed)
    words = np.array(["12", "3.5", "-4", "1e3", "n/a", "abc", " 7 ", "", "x1", "1,000"])
    values = pa.array(words[rng.integers(0, len(words), 5000)].tolist())
    per_row = pc.sum(pc.match_substring_regex(values, NUMBER)).as_py()
    assert _count_matching(pc.value_counts(values), NUMBER) == per_row


def test_a_column_left_unread_is_an_identifier_by_its_name_or_not_read() -> None:
    table = pa.table({"Age": [30, 40, 50, 60] * 10, "Gender": ["F", "M"] * 20})
    schema = infer_schema(table, Features(), header=["CustomerID", "Age", "Notes", "Gender"])
    reasons = {c.name: (c.role, c.reason) for c in schema.columns}
    assert reasons["CustomerID"] == ("ignored", "identifier (by name)")
    assert reasons["Notes"] == ("ignored", "not read")
    assert [c.name for c in schema.columns] == ["CustomerID", "Age", "Notes", "Gender"]


# -- real files: numbers and dates as people write them --------------------------------


class _Progress:
    def stage(self, name: str, fraction: float) -> None:
        pass

    def note(self, message: str) -> None:
        pass


def write_csv(path: Path, header: list[str], rows: list[list[Any]], delimiter: str = ",",
              encoding: str = "utf-8") -> Path:
    with open(path, "w", encoding=encoding, newline="") as f:
        writer = csv.writer(f, delimiter=delimiter, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def read_schema(path: Path) -> Schema:
    data = read_data(str(path))
    return infer_schema(data.table, Features(), str(path), header=data.meta["header"])


NUMBERS_AS_TEXT = ("numbers written as text (e.g. {!r}): ignored; write plain numbers such "
                   "as 1234.56 (no currency sign, thousands separator, decimal comma or %)")
AS_TEXT: dict[str, Callable[[float], str]] = {
    "dollars": lambda x: f"${x:,.2f}",
    "decimal-comma": lambda x: f"{x:.2f}".replace(".", ","),
    "euros": lambda x: f"{x:,.2f} €".replace(",", " ").replace(".", ","),
    "percent": lambda x: f"{int(x) % 40}%",
}


@pytest.mark.parametrize(("written", "name", "delimiter", "encoding"), [
    ("dollars", "Income_USD", ",", "utf-8"),
    ("decimal-comma", "Einkommen €", ";", "utf-8-sig"),  # a European file: BOM and ';'
    ("euros", "Revenu", ";", "utf-8"),
    ("percent", "Discount", ",", "utf-8"),  # 40 levels: too many for a category
])
def test_numbers_written_as_text_are_ignored_with_the_reason_not_as_identifiers(
        tmp_path: Path, written: str, name: str, delimiter: str, encoding: str) -> None:
    rng = np.random.default_rng(7)
    money = np.exp(rng.normal(10, 0.8, 500))
    rows = [[f"{s:.2f}", int(v), AS_TEXT[written](m)] for s, v, m in
            zip(rng.lognormal(4, 0.5, 500), rng.poisson(3, 500), money, strict=True)]
    path = write_csv(tmp_path / "customers.csv", ["Spend", "Visits", name], rows, delimiter,
                     encoding)
    schema = read_schema(path)
    assert (role(schema, name), schema.reasons[name]) == (
        "ignored", NUMBERS_AS_TEXT.format(rows[0][2]))
    # the same file with plain numbers clusters on the column
    plain = [[s, v, f"{m:.2f}"] for (s, v, _), m in zip(rows, money, strict=True)]
    again = read_schema(write_csv(tmp_path / "plain.csv", ["Spend", "Visits", name], plain,
                                  delimiter, encoding))
    assert (role(again, name), again.reasons[name]) == ("numeric", "float")


def test_a_few_levels_of_percentages_stay_a_category(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    rows = [[f"{s:.2f}", f"{t}%"] for s, t in
            zip(rng.lognormal(4, 0.5, 300), rng.choice([10, 20, 30], 300), strict=True)]
    schema = read_schema(write_csv(tmp_path / "tiers.csv", ["Spend", "Discount"], rows))
    assert (role(schema, "Discount"), schema.reasons["Discount"]) == (
        "categorical", "text with 3 levels")


def test_a_run_warns_that_numbers_written_as_text_were_ignored(tmp_path: Path) -> None:
    from custseg.config import config_from_dict
    from custseg.engines.base import TrainRequest
    from custseg.engines.local import train_local

    rng = np.random.default_rng(4)
    rows = [[f"{s:.2f}", int(v), f"${m:,.2f}"] for s, v, m in
            zip(rng.lognormal(4, 0.5, 400), rng.poisson(3, 400), np.exp(rng.normal(10, 1, 400)),
                strict=True)]
    path = write_csv(tmp_path / "types.csv", ["Spend", "Visits", "Income_USD"], rows)
    cfg = config_from_dict({"data_uri": str(path), "n_clusters": 2, "n_components": 2,
                            "store": str(tmp_path / "store")})
    model = train_local(cfg, TrainRequest("t", None, None, {}), _Progress())
    expected = f"ignored: Income_USD ({NUMBERS_AS_TEXT.format(rows[0][2])})"
    assert expected in model.meta["warnings"]


def order_dates(rng: np.random.Generator, n: int, late: int, fmt: str,
                unknown_every: int = 0, placeholder: str = "unknown") -> list[list[Any]]:
    """Rows of Spend, Visits, LastOrder: the first `n - late` dates have a day <= 12 (they
    read either way), the last `late` a day past 12; every `unknown_every`th date (from row
    8) is `placeholder`."""
    rows = []
    for i in range(n):
        day = int(rng.integers(1, 13)) if i < n - late else int(rng.integers(13, 29))
        text = dt.date(2023, int(rng.integers(1, 13)), day).strftime(fmt)
        if unknown_every and i % unknown_every == 7:
            text = placeholder
        rows.append([f"{rng.lognormal(5, 1):.2f}", int(rng.poisson(4)), text])
    return rows


@pytest.mark.parametrize("late", [500, 30, 1], ids=["sorted-17%", "sorted-1%", "last-row"])
@pytest.mark.parametrize("fmt", ["%m/%d/%Y", "%m-%d-%Y"])
def test_the_date_format_is_the_one_that_reads_every_value(tmp_path: Path, late: int,
                                                           fmt: str) -> None:
    # month-first dates, sorted so that only the last rows show a day past 12
    rows = order_dates(np.random.default_rng(5), 3000, late, fmt)
    path = write_csv(tmp_path / "dates_us.csv", ["Spend", "Visits", "LastOrder"], rows)
    data = read_data(str(path))
    schema = infer_schema(data.table, Features(), str(path))
    assert (role(schema, "LastOrder"), schema.column("LastOrder").date_format) == ("date", fmt)
    transform, _ = fit_features(data.table, schema, data.locate)
    newest = max(dt.datetime.strptime(r[2], fmt).date() for r in rows)
    assert transform.date_reference["LastOrder"] == (newest - dt.date(1970, 1, 1)).days


def test_a_date_column_with_a_placeholder_word_is_ignored_and_training_goes_on(
        tmp_path: Path) -> None:
    rows = order_dates(np.random.default_rng(5), 3000, 1500, "%Y-%m-%d", unknown_every=40)
    path = write_csv(tmp_path / "dates_bad.csv", ["Spend", "Visits", "LastOrder"], rows)
    data = read_data(str(path))
    schema = infer_schema(data.table, Features(), str(path))
    assert (role(schema, "LastOrder"), schema.reasons["LastOrder"]) == (
        "ignored", "dates (%Y-%m-%d), but 75 of 3,000 values are not (e.g. 'unknown'): "
                   "ignored; leave unknown dates empty or correct them")
    transform, _ = fit_features(data.table, schema, data.locate)
    assert transform.numeric == ["Spend", "Visits"]


def test_unknown_dates_left_empty_are_imputed(tmp_path: Path) -> None:
    rows = order_dates(np.random.default_rng(5), 3000, 1500, "%Y-%m-%d", unknown_every=40,
                       placeholder="")
    path = write_csv(tmp_path / "dates_empty.csv", ["Spend", "Visits", "LastOrder"], rows)
    data = read_data(str(path))
    schema = infer_schema(data.table, Features(), str(path))
    assert schema.column("LastOrder").date_format == "iso"  # typed by the reader
    _, enc = fit_features(data.table, schema, data.locate)
    assert np.isfinite(enc.num).all()
