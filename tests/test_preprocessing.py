"""Feature engineering: equals scikit-learn's ColumnTransformer; schema inference rules."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from custseg.config import Features
from custseg.core.preprocessing import encode, fit_features
from custseg.core.sample import generate_customers
from custseg.core.schema import infer_schema
from custseg.errors import DataError


def sklearn_columns(numeric: list[str], categorical: list[str]):  # type: ignore[no-untyped-def]
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    return ColumnTransformer([
        ("num", Pipeline([("i", SimpleImputer(strategy="median")), ("s", StandardScaler())]),
         numeric),
        ("cat", Pipeline([("i", SimpleImputer(strategy="most_frequent")),
                          ("o", OneHotEncoder(handle_unknown="ignore"))]), categorical),
    ], sparse_threshold=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_features_equal_sklearn_column_transformer(seed: int) -> None:
    table, _ = generate_customers(3000, segments=3, seed=seed)
    schema = infer_schema(table, Features())
    transform, enc = fit_features(table, schema, features=Features(transform="none"))
    assert transform.plain
    frame = table.to_pandas()
    expected = sklearn_columns(schema.numeric, schema.categorical).fit_transform(frame)
    np.testing.assert_allclose(enc.dense(transform), expected, rtol=1e-12, atol=1e-12)
    # re-encoding the same rows with the learned transform gives the same features
    np.testing.assert_allclose(encode(table, transform).dense(transform), expected, atol=1e-12)


def test_inferred_schema_of_sample_customers() -> None:
    table, _ = generate_customers(2000, segments=3, seed=0)
    schema = infer_schema(table, Features())
    assert schema.inferred
    assert schema.numeric == ["Age", "Income", "Purchases"]
    assert schema.categorical == ["Gender"]
    assert schema.ignored == ["CustomerID"]
    assert "identifier" in schema.reasons["CustomerID"]


def test_inference_rules_for_booleans_codes_ids_and_free_text() -> None:
    n = 400
    rng = np.random.default_rng(0)
    table = pa.table({
        "user_id": np.arange(n),
        "Channel": rng.integers(1, 3, n),  # a code: 2 distinct integers
        "Visits": rng.integers(0, 40, n),  # a count: many distinct integers
        "Weekend": rng.random(n) < 0.3,  # boolean -> numeric 0/1
        "Email": [f"user{i}@example.com" for i in range(n)],  # mostly unique text
        "Month": np.asarray(["Jan", "Feb", "Mar"], dtype=object)[rng.integers(0, 3, n)],
    })
    schema = infer_schema(table, Features(ignore=[]))
    assert schema.ignored == ["user_id", "Email"]
    assert schema.categorical == ["Channel", "Month"]
    assert schema.numeric == ["Visits", "Weekend"]
    _, enc = fit_features(table, schema)
    weekend = enc.num[:, schema.numeric.index("Weekend")]
    assert len(np.unique(weekend)) == 2


def test_declared_schema_is_taken_as_is_and_ignore_applies() -> None:
    table, _ = generate_customers(500, seed=0)
    schema = infer_schema(table, Features(numeric=["Income"], categorical=["Gender"]))
    assert (schema.numeric, schema.categorical, schema.inferred) == (["Income"], ["Gender"], False)
    assert set(schema.ignored) == {"CustomerID", "Age", "Purchases"}
    inferred = infer_schema(table, Features(ignore=["Age"]))
    assert "Age" in inferred.ignored and inferred.reasons["Age"] == "features.ignore"


def test_unknown_categories_encode_as_all_zeros_and_missing_as_the_mode() -> None:
    table = pa.table({"x": [1.0, 2.0, 3.0, 4.0], "g": ["a", "b", "b", None]})
    schema = infer_schema(table, Features(numeric=["x"], categorical=["g"]))
    transform, enc = fit_features(table, schema)
    assert transform.modes == ["b"]
    assert enc.codes[:, 0].tolist() == [0, 1, 1, 1]
    new = encode(pa.table({"x": [None, 2.0], "g": ["zzz", None]}), transform)
    assert new.codes[:, 0].tolist() == [-1, 1]
    dense = new.dense(transform)
    assert dense[0, 1:].tolist() == [0.0, 0.0]
    assert new.num[0, 0] == pytest.approx((transform.medians[0] - transform.means[0])
                                          / transform.scales[0])


@pytest.mark.parametrize(("columns", "features", "message"), [
    ({"x": [1.0, 2.0], "y": [None, None]}, Features(numeric=["x", "y"]),
     "column 'y' has no values"),
    ({"x": [1.0, 2.0], "y": [5.0, 5.0]}, Features(numeric=["x", "y"]), "column 'y' is constant"),
    ({"x": [1.0, 2.0], "g": ["a", "a"]}, Features(numeric=["x"], categorical=["g"]),
     "column 'g' is constant"),
    ({"x": ["1", "2", "oops"]}, Features(numeric=["x"]), "row 3 .*holds 'oops'"),
    ({"x": [1.0, 2.0]}, Features(numeric=["x", "Income"]), "'Income' .*features.numeric.* missing"),
])
def test_bad_columns_are_named(columns: dict[str, list[object]], features: Features,
                               message: str) -> None:
    table = pa.table(columns)
    with pytest.raises(DataError, match=message):
        fit_features(table, infer_schema(table, features))


def test_columns_fitted_on_threads_equal_one_after_another(monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    """Big tables fit their columns on threads: the same transform and features, bit for
    bit, as fitting them one after another; the first bad column's error, in order."""
    import custseg.core.preprocessing as prep

    table, _ = generate_customers(prep.PARALLEL_ROWS + 1000, segments=3, seed=4)
    rng = np.random.default_rng(4)
    income = table.column("Income").to_numpy().astype(float)
    income[rng.random(len(income)) < 0.05] = np.nan  # missing values take the median
    table = table.set_column(table.column_names.index("Income"), "Income", pa.array(income))
    schema = infer_schema(table, Features())
    threaded_t, threaded = fit_features(table, schema)
    monkeypatch.setattr(prep, "PARALLEL_ROWS", 10**12)
    serial_t, serial = fit_features(table, schema)
    for field in ("medians", "means", "scales", "log_scales", "clip_low", "clip_high",
                  "weights"):
        np.testing.assert_array_equal(getattr(threaded_t, field), getattr(serial_t, field))
    assert (threaded_t.functions, threaded_t.categories, threaded_t.modes) == (
        serial_t.functions, serial_t.categories, serial_t.modes)
    np.testing.assert_array_equal(threaded.num, serial.num)
    np.testing.assert_array_equal(threaded.codes, serial.codes)
    assert threaded.clipped.keys() == serial.clipped.keys()

    monkeypatch.setattr(prep, "PARALLEL_ROWS", 0)
    flat = table.append_column("Flat", pa.array(np.ones(table.num_rows)))
    flat = flat.append_column("Flat2", pa.array(np.ones(table.num_rows)))
    declared = Features(numeric=[*schema.numeric, "Flat", "Flat2"],
                        categorical=schema.categorical)
    with pytest.raises(DataError, match="'Flat' is constant"):
        fit_features(flat, infer_schema(flat, declared), features=declared)


def test_category_levels_count_and_index_every_row_in_one_pass() -> None:
    """Levels in order of first appearance with their counts, as value_counts gives
    them, and each row's level (missing: one past the last), chunks and all."""
    import pyarrow.compute as pc

    from custseg.core.columns import category_codes, category_levels

    col = pa.chunked_array([["b", None, "a", "b"], [], ["c", "b", None]])
    levels, counts, index = category_levels(col)
    expected = pc.value_counts(col.drop_null())
    assert levels == expected.field("values").to_pylist() == ["b", "a", "c"]
    assert counts.tolist() == expected.field("counts").to_pylist() == [3, 1, 1]
    assert index.tolist() == [0, 3, 1, 0, 2, 0, 3]
    codes = category_codes(col, sorted(levels))
    assert [sorted(levels).index(levels[i]) if i < 3 else -2 for i in index] == codes.tolist()
    assert category_levels(pa.chunked_array([], pa.string()))[0] == []
