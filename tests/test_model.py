"""The model artifact and scorer: round trip, integrity, equivalence with scikit-learn."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import io
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import custseg
from custseg.artifact.scorer import Model
from custseg.artifact.storage import load_model, save_model
from custseg.config import Features
from custseg.core.preprocessing import FeatureTransform, fit_features
from custseg.core.schema import infer_schema
from custseg.core.train import train
from custseg.errors import CustsegError, DataError, ModelError

CATEGORY_POOL = ["red", "green", "blue", "amber", "violet"]
KINDS = ("normal", "lognormal", "mixed")
DATE_FORMAT = "%d-%m-%Y"
FIRST_DAY = dt.date(2012, 1, 1)


def random_frame(rng: np.random.Generator, n: int, n_num: int, n_cat: int,
                 missing: float, cats: list[list[str]], kinds: Sequence[str] = (),
                 date: bool = False) -> pd.DataFrame:
    """Three latent groups over `n_num` numeric columns (`kinds[j]`: normal, log-normal
    money, or mixed-sign heavy-tailed; normal when not given), `n_cat` categorical ones
    and, when `date`, a `%d-%m-%Y` text date column; `missing` of each is missing."""
    cols: dict[str, object] = {}
    centers = rng.normal(0, 4, size=(3, n_num + 1))
    which = rng.integers(0, 3, n)
    for j in range(n_num):
        kind = kinds[j] if j < len(kinds) else "normal"
        if kind == "lognormal":  # skewed positive money
            values = 100 * np.exp(centers[which, j] / 4 + rng.normal(0, rng.uniform(0.5, 1.5), n))
        elif kind == "mixed":  # losses and a long tail of gains
            values = np.exp(3 + centers[which, j] / 4 + rng.normal(0, 1.3, n)) - 25
        else:
            values = centers[which, j] + rng.normal(0, 1, n) * rng.uniform(0.5, 50)
        values[rng.random(n) < missing] = np.nan
        cols[f"num{j}"] = values
    for j in range(n_cat):
        values = np.asarray(cats[j], dtype=object)[rng.integers(0, len(cats[j]), n)]
        values[rng.random(n) < missing] = None
        cols[f"cat{j}"] = values
    if date:
        offsets = 40 * centers[which, n_num] + rng.integers(0, 120, n) + 400
        days = np.asarray([(FIRST_DAY + dt.timedelta(days=int(d))).strftime(DATE_FORMAT)
                           for d in offsets], dtype=object)
        days[rng.random(n) < max(missing, 0.05)] = None  # some missing, always
        cols["since"] = days
    return pd.DataFrame(cols)


def with_outliers(frame: pd.DataFrame, rng: np.random.Generator, share: float = 0.1
                  ) -> pd.DataFrame:
    """`share` of the rows pushed far beyond any training range, in both directions; dates
    years before and after the training dates."""
    out = frame.copy()
    for name in out.columns:
        rows = rng.random(len(out)) < share
        signs = np.where(rng.random(rows.sum()) < 0.5, -1.0, 1.0)
        if name.startswith("num"):
            out.loc[rows, name] = signs * 10.0 ** rng.uniform(4, 7, rows.sum())
        elif name == "since":
            out.loc[rows, name] = [(FIRST_DAY + dt.timedelta(days=int(s * d))).strftime(
                DATE_FORMAT) for s, d in zip(signs, rng.integers(2000, 6000, rows.sum()),
                                             strict=True)]
    return out


def features_of(frame: pd.DataFrame, transform: str = "auto") -> Features:
    return Features(numeric=[c for c in frame.columns if c.startswith("num")],
                    categorical=[c for c in frame.columns if c.startswith("cat")],
                    dates=[c for c in frame.columns if c == "since"], transform=transform)


def fit_model(frame: pd.DataFrame, k: int, n_components: int | float | str, seed: int,
              transform: str = "auto") -> Model:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    features = features_of(frame, transform)
    schema = infer_schema(table, features)
    transform_, enc = fit_features(table, schema, features=features)
    result = train(enc, transform_, k_candidates=[k], n_components=n_components,
                   random_state=seed, n_init=3)
    return Model(schema=schema, transform=transform_, projection=result.projection,
                 centers=result.clustering.centers, meta={"training_labels": None})


def as_records(frame: pd.DataFrame) -> list[dict[str, object]]:
    return frame.astype(object).where(frame.notna(), None).to_dict("records")  # type: ignore[no-any-return]


def assert_same_transform(a: FeatureTransform, b: FeatureTransform) -> None:
    assert (a.numeric, a.categorical, a.functions, a.dates) == (
        b.numeric, b.categorical, b.functions, b.dates)
    assert a.date_reference == b.date_reference
    for name in ("medians", "means", "scales", "log_scales", "clip_low", "clip_high", "weights"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n_num=st.integers(1, 4), n_cat=st.integers(0, 2),
       n_levels=st.lists(st.integers(2, 4), min_size=2, max_size=2), k=st.integers(2, 4),
       missing=st.sampled_from([0.0, 0.05, 0.3]), pca=st.sampled_from(["one", "all", "frac"]),
       kinds=st.lists(st.sampled_from(KINDS), min_size=4, max_size=4), date=st.booleans(),
       transform=st.sampled_from(["auto", "none"]))
def test_scorer_equals_sklearn_pipeline(tmp_path_factory: pytest.TempPathFactory, seed: int,
                                        n_num: int, n_cat: int, n_levels: list[int], k: int,
                                        missing: float, pca: str, kinds: list[str], date: bool,
                                        transform: str) -> None:
    rng = np.random.default_rng(seed)
    cats = [CATEGORY_POOL[:levels] for levels in n_levels]
    train_frame = random_frame(rng, 120, n_num, n_cat, missing, cats, kinds, date)
    d = n_num + date + sum(n_levels[:n_cat])
    n_components = {"one": 1, "all": d, "frac": 0.8}[pca]
    try:
        model = fit_model(train_frame, k, n_components, seed, transform)
    except CustsegError:
        assume(False)  # degenerate draw (e.g. a constant column): rejected with a clear error
    t = model.transform
    assert t.plain is (transform == "none" and not date)
    folder = tmp_path_factory.mktemp("model") / "m"
    loaded = load_model(save_model(model, str(folder)))
    assert_same_transform(loaded.transform, t)
    # new rows: unseen categories ("black"), missing values and outliers beyond the bounds
    wider = [[*c, "black"] for c in cats]
    new = with_outliers(random_frame(rng, 200, n_num, n_cat, max(missing, 0.1), wider, kinds,
                                     date), rng)
    if transform == "auto":  # the outliers do reach past the clip bounds
        for j, name in enumerate(t.numeric):
            if np.isfinite(t.clip_high[j]) and name != "since":
                assert (new[name] > t.clip_high[j]).any() and (new[name] < t.clip_low[j]).any()
    pipeline = loaded.to_sklearn()
    for frame in (train_frame, new):
        ours, dist = loaded.score(frame)
        theirs = pipeline.predict(frame)
        np.testing.assert_array_equal(ours, theirs)
        # the twin's distance from its own PCA output: KMeans.transform expands |z - c|^2
        # and loses ~1e-8 |z| to cancellation, which outliers make visible
        z = pipeline[:-1].transform(frame)
        sk_dist = np.linalg.norm(z - pipeline[-1].cluster_centers_[theirs], axis=1)
        np.testing.assert_allclose(dist, sk_dist, rtol=1e-7, atol=1e-9)
        records = as_records(frame)
        by_records, records_dist = loaded.score(records)
        np.testing.assert_array_equal(by_records, theirs)
        np.testing.assert_allclose(records_dist, sk_dist, rtol=1e-7, atol=1e-9)
        for i, record in enumerate(records[:60]):  # the server's one-record path
            label, distance = loaded.score_record(record)
            assert label == theirs[i]
            assert distance == pytest.approx(sk_dist[i], rel=1e-7, abs=1e-9)
    for frame in (train_frame, new):
        np.testing.assert_array_equal(loaded.predict(frame), model.predict(frame))


@pytest.fixture()
def sample_model(tmp_path: Path) -> tuple[Model, Path]:
    rng = np.random.default_rng(1)
    frame = random_frame(rng, 300, 3, 1, 0.05, [["F", "M", "X"]])
    model = fit_model(frame, 3, 2, 0)
    folder = tmp_path / "model"
    save_model(model, str(folder))
    return model, folder


def test_artifact_is_plain_data_with_a_manifest(sample_model: tuple[Model, Path]) -> None:
    _, folder = sample_model
    assert sorted(p.name for p in folder.iterdir()) == ["arrays.npz", "manifest.json", "model.json"]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert set(manifest["files"]) == {"model.json", "arrays.npz"}
    with np.load(folder / "arrays.npz", allow_pickle=False) as npz:
        assert all(npz[name].dtype != object for name in npz.files)
    meta = json.loads((folder / "model.json").read_text())
    assert meta["features"]["categories"] == [["F", "M", "X"]]


@pytest.mark.parametrize("name", ["model.json", "arrays.npz"])
def test_tampered_artifact_is_refused(sample_model: tuple[Model, Path], name: str) -> None:
    _, folder = sample_model
    data = bytearray((folder / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (folder / name).write_bytes(bytes(data))
    with pytest.raises(ModelError, match=f"{name} does not match its sha256"):
        load_model(folder)


def test_missing_file_and_missing_artifact(sample_model: tuple[Model, Path], tmp_path: Path
                                           ) -> None:
    _, folder = sample_model
    with pytest.raises(ModelError, match=r"no model artifact"):
        load_model(tmp_path / "nowhere")
    (tmp_path / "a-file").write_text("not a model folder")
    with pytest.raises(ModelError, match=r"no model artifact"):
        load_model(tmp_path / "a-file")
    (folder / "arrays.npz").unlink()
    with pytest.raises(ModelError, match=r"is missing arrays\.npz"):
        load_model(folder)


def test_save_never_overwrites_and_leaves_no_temp_files(sample_model: tuple[Model, Path]
                                                        ) -> None:
    model, folder = sample_model
    with pytest.raises(ModelError, match="already exists"):
        save_model(model, str(folder))
    assert [p.name for p in folder.parent.iterdir()] == ["model"]


def test_a_model_is_immutable_and_saving_leaves_it_unchanged(
        sample_model: tuple[Model, Path], tmp_path: Path) -> None:
    model, folder = sample_model
    assert model.uri is None  # saved by the fixture, still not changed by the save
    with pytest.raises(dataclasses.FrozenInstanceError):
        model.uri = "elsewhere"  # type: ignore[misc]
    saved = save_model(model, str(tmp_path / "again"))
    assert saved == str(tmp_path / "again") and model.uri is None
    placed = model.with_uri(saved)
    assert (placed.uri, model.uri) == (saved, None)
    assert load_model(folder).uri == str(folder)
    records = [{"num0": 1.0, "num1": -2.0, "num2": 0.5, "cat0": "M"},
               {"num0": None, "num1": 3.0, "num2": 0.0, "cat0": "unseen"}]
    np.testing.assert_array_equal(placed.predict(records), model.predict(records))
    assert placed.score_record(records[0]) == model.score_record(records[0])


def test_predict_input_forms_agree(sample_model: tuple[Model, Path]) -> None:
    _, folder = sample_model
    loaded = custseg.load_model(str(folder))
    record = {"num0": 1.5, "num1": -2.0, "num2": 30.0, "cat0": "M"}
    expected = loaded.predict([record])
    assert loaded.predict(record).tolist() == expected.tolist()
    assert loaded.predict({k: [v] for k, v in record.items()}).tolist() == expected.tolist()
    assert loaded.predict(pd.DataFrame([record])).tolist() == expected.tolist()
    assert loaded.predict(pa.Table.from_pylist([record])).tolist() == expected.tolist()
    as_text = {k: str(v) for k, v in record.items()}  # numbers sent as strings still score
    assert loaded.predict(as_text).tolist() == expected.tolist()


@pytest.mark.parametrize(("record", "message"), [
    ({"num1": 1.0, "num2": 1.0, "cat0": "M"}, "field 'num0' is missing"),
    ({"num0": "abc", "num1": 1.0, "num2": 1.0, "cat0": "M"},
     "field 'num0' must be a number, found 'abc'"),
    ({"num0": float("inf"), "num1": 1.0, "num2": 1.0, "cat0": "M"}, "must be finite"),
    ({"num0": 1.0, "num1": 1.0, "num2": 1.0}, "field 'cat0' is missing"),
])
def test_invalid_records_name_the_field(sample_model: tuple[Model, Path], record: dict[str, object],
                                        message: str) -> None:
    model, _ = sample_model
    with pytest.raises(DataError, match=message):
        model.predict([record])
    with pytest.raises(DataError, match=message):
        model.score_record(record)


def test_coded_categories_accept_numbers_or_strings() -> None:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"spend": rng.gamma(2, 100, 200), "Region": rng.integers(1, 4, 200)})
    table = pa.Table.from_pandas(frame, preserve_index=False)
    schema = infer_schema(table, Features())
    assert schema.categorical == ["Region"]
    transform, enc = fit_features(table, schema)
    result = train(enc, transform, k_candidates=[2], n_components=1)
    model = Model(schema, transform, result.projection, result.clustering.centers)
    as_int = model.predict([{"spend": 120.0, "Region": 2}])
    assert model.predict([{"spend": 120.0, "Region": "2"}]).tolist() == as_int.tolist()
    assert model.predict([{"spend": 120.0, "Region": 2.0}]).tolist() == as_int.tolist()


def test_a_bad_record_in_a_large_batch_is_named(sample_model: tuple[Model, Path]) -> None:
    model, _ = sample_model
    good = {"num0": 1.0, "num1": 2.0, "num2": "3.5", "cat0": "M"}
    records = [dict(good) for _ in range(1000)]
    records[500]["num1"] = "n/a"
    with pytest.raises(DataError, match=r"record 500: field 'num1' must be a number"):
        model.predict(records)
    del records[500]["num1"]
    with pytest.raises(DataError, match=r"record 500: field 'num1' is missing"):
        model.predict(records)
    records[500]["num1"] = None  # missing values are imputed, in batches as one by one
    batch = model.predict(records)
    assert batch[500] == model.predict([records[500]])[0]
    assert batch.tolist() == [model.predict([r])[0] for r in records[:20]] + batch[20:].tolist()


def write_format_1(folder: Path) -> None:
    """Rewrite a saved artifact as format 1 wrote it: no skew transforms, clip bounds,
    dates or one-hot weights, the schema as role lists and reasons, and a new manifest."""
    meta = json.loads((folder / "model.json").read_text())
    meta["format_version"] = 1
    for key in ("functions", "dates", "date_reference"):
        del meta["features"][key]
    schema = meta["schema"]
    meta["schema"] = {key: schema[key] for key in
                      ("numeric", "categorical", "ignored", "inferred", "reasons")}
    with np.load(folder / "arrays.npz", allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files
                  if name not in ("log_scales", "clip_low", "clip_high", "category_weights")}
    buf = io.BytesIO()
    np.savez(buf, allow_pickle=False, **arrays)
    files = {"model.json": json.dumps(meta, indent=2).encode(), "arrays.npz": buf.getvalue()}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["format_version"] = 1
    manifest["files"] = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))


def test_a_format_1_artifact_loads_and_scores_as_the_plain_transform(tmp_path: Path) -> None:
    rng = np.random.default_rng(21)
    cats = [["F", "M", "X"], ["a", "b"]]
    kinds = ["lognormal", "mixed", "normal"]  # skewed: the plain fit must not be the default
    frame = random_frame(rng, 300, 3, 2, 0.05, cats, kinds)
    plain = fit_model(frame, 3, 2, 0, transform="none")
    assert plain.transform.plain
    folder = tmp_path / "v1"
    save_model(plain, str(folder))
    write_format_1(folder)
    assert json.loads((folder / "manifest.json").read_text())["format_version"] == 1
    with np.load(folder / "arrays.npz") as npz:
        assert "clip_low" not in npz.files
    old = load_model(folder)
    assert old.transform.plain
    assert_same_transform(old.transform, plain.transform)
    assert (old.schema.numeric, old.schema.categorical) == (plain.schema.numeric,
                                                            plain.schema.categorical)
    new = with_outliers(random_frame(rng, 200, 3, 2, 0.1, [[*c, "black"] for c in cats], kinds),
                        rng)
    for rows in (frame, new):
        labels, dist = old.score(rows)
        expected_labels, expected_dist = plain.score(rows)
        np.testing.assert_array_equal(labels, expected_labels)
        np.testing.assert_array_equal(dist, expected_dist)
        np.testing.assert_array_equal(old.to_sklearn().predict(rows), expected_labels)
        for i, record in enumerate(as_records(rows)[:40]):
            assert old.score_record(record) == pytest.approx(plain.score_record(record))
            assert old.score_record(record)[0] == expected_labels[i]
    auto = fit_model(frame, 3, 2, 0)  # the default transform does score differently
    assert not np.array_equal(auto.score(new)[1], plain.score(new)[1])


@pytest.mark.parametrize("version", [0, 4, "2"])
def test_an_unknown_format_version_is_refused(sample_model: tuple[Model, Path],
                                              version: object) -> None:
    _, folder = sample_model
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["format_version"] = version
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match=rf"version {version!r} is not supported"):
        load_model(folder)


@pytest.fixture()
def date_model() -> Model:
    rng = np.random.default_rng(5)
    frame = random_frame(rng, 300, 2, 1, 0.05, [["F", "M"]], ["lognormal", "normal"], date=True)
    return fit_model(frame, 3, 2, 0)


@pytest.mark.parametrize("since", [
    "soon", "2012-13-45", "45-01-2012", "31-02-2012",
])
def test_an_impossible_date_is_refused_by_every_scoring_path(date_model: Model,
                                                             since: str) -> None:
    record = {"num0": 120.0, "num1": 3.0, "cat0": "F", "since": since}
    message = rf"field 'since' must be a date \(%d-%m-%Y\), found '{since}'"
    with pytest.raises(DataError, match=message):
        date_model.score_record(record)
    with pytest.raises(DataError, match=message):
        date_model.predict([record] * 20)  # the vectorised records path
    with pytest.raises(DataError, match=rf"'since' should be a date \(%d-%m-%Y\), but row 1 "
                                        rf"holds '{since}'"):
        date_model.predict(pa.Table.from_pylist([record]))


def test_dates_score_alike_on_every_path(date_model: Model) -> None:
    days = ["01-01-2013", "15-06-2013", "29-02-2016", None, "01-01-1990", "01-01-2030"]
    records = [{"num0": 50.0 * (i + 1), "num1": float(i), "cat0": "M", "since": d}
               for i, d in enumerate(days)]
    table_labels, table_dist = date_model.score(pa.Table.from_pylist(records))
    records_labels, records_dist = date_model.score(records * 3)  # > 8: vectorised
    np.testing.assert_array_equal(records_labels[: len(days)], table_labels)
    np.testing.assert_allclose(records_dist[: len(days)], table_dist, rtol=1e-12)
    for i, record in enumerate(records):
        label, distance = date_model.score_record(record)
        assert label == table_labels[i]
        assert distance == pytest.approx(table_dist[i], rel=1e-12)


def test_true_and_false_score_only_for_a_0_1_column(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    n = 300
    frame = pd.DataFrame({"spend": rng.gamma(2, 100, n), "visits": rng.integers(2, 40, n),
                          "weekend": rng.random(n) < 0.3})
    table = pa.Table.from_pandas(frame, preserve_index=False)
    schema = infer_schema(table, Features())
    transform, enc = fit_features(table, schema)
    assert transform.flags == ["weekend"]
    result = train(enc, transform, k_candidates=[2], n_components=2)
    model = load_model(save_model(Model(schema, transform, result.projection,
                                        result.clustering.centers), str(tmp_path / "m")))
    good = {"spend": 120.0, "visits": 7, "weekend": True}
    as_number = {**good, "weekend": 1}
    assert model.predict([good]).tolist() == model.predict([as_number]).tolist()
    assert model.score_record(good) == model.score_record(as_number)
    for bad in ({**good, "visits": True}, {**good, "spend": False}):
        field = next(k for k, v in bad.items() if type(v) is bool and k != "weekend")
        with pytest.raises(DataError, match=f"field '{field}' must be a number, found"):
            model.score_record(bad)
        with pytest.raises(DataError, match=f"record 10: field '{field}' must be a number"):
            model.predict([good] * 10 + [bad])
