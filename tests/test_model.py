"""The model artifact and scorer: round trip, integrity, equivalence with scikit-learn."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import custseg
from custseg.config import Features
from custseg.errors import CustsegError, DataError, ModelError
from custseg.model import Model, load_model, save_model
from custseg.preprocessing import fit_features, infer_schema
from custseg.train import train

CATEGORY_POOL = ["red", "green", "blue", "amber", "violet"]


def random_frame(rng: np.random.Generator, n: int, n_num: int, n_cat: int,
                 missing: float, cats: list[list[str]]) -> pd.DataFrame:
    cols: dict[str, object] = {}
    centers = rng.normal(0, 4, size=(3, n_num))
    which = rng.integers(0, 3, n)
    for j in range(n_num):
        values = centers[which, j] + rng.normal(0, 1, n) * rng.uniform(0.5, 50)
        values[rng.random(n) < missing] = np.nan
        cols[f"num{j}"] = values
    for j in range(n_cat):
        values = np.asarray(cats[j], dtype=object)[rng.integers(0, len(cats[j]), n)]
        values[rng.random(n) < missing] = None
        cols[f"cat{j}"] = values
    return pd.DataFrame(cols)


def fit_model(frame: pd.DataFrame, k: int, n_components: int | float | str, seed: int) -> Model:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    schema = infer_schema(table, Features(
        numeric=[c for c in frame.columns if c.startswith("num")],
        categorical=[c for c in frame.columns if c.startswith("cat")]))
    transform, enc = fit_features(table, schema)
    result = train(enc, transform, k_candidates=[k], n_components=n_components,
                   random_state=seed, n_init=3)
    return Model(schema=schema, transform=transform, projection=result.projection,
                 centers=result.clustering.centers, meta={"training_labels": None})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n_num=st.integers(1, 4), n_cat=st.integers(0, 2),
       n_levels=st.lists(st.integers(2, 4), min_size=2, max_size=2), k=st.integers(2, 4),
       missing=st.sampled_from([0.0, 0.05, 0.3]), pca=st.sampled_from(["one", "all", "frac"]))
def test_scorer_equals_sklearn_pipeline(tmp_path_factory: pytest.TempPathFactory, seed: int,
                                        n_num: int, n_cat: int, n_levels: list[int], k: int,
                                        missing: float, pca: str) -> None:
    rng = np.random.default_rng(seed)
    cats = [CATEGORY_POOL[:levels] for levels in n_levels]
    train_frame = random_frame(rng, 120, n_num, n_cat, missing, cats)
    d = n_num + sum(n_levels[:n_cat])
    n_components = {"one": 1, "all": d, "frac": 0.8}[pca]
    try:
        model = fit_model(train_frame, k, n_components, seed)
    except CustsegError:
        assume(False)  # degenerate draw (e.g. a constant column): rejected with a clear error
    folder = tmp_path_factory.mktemp("model") / "m"
    loaded = load_model(save_model(model, str(folder)))
    # new rows: unseen categories ("black") and missing values included
    wider = [[*c, "black"] for c in cats]
    new = random_frame(rng, 200, n_num, n_cat, max(missing, 0.1), wider)
    pipeline = loaded.to_sklearn()
    for frame in (train_frame, new):
        ours, dist = loaded.score(frame)
        theirs = pipeline.predict(frame)
        np.testing.assert_array_equal(ours, theirs)
        sk_dist = pipeline.transform(frame).min(axis=1)
        np.testing.assert_allclose(dist, sk_dist, rtol=1e-7, atol=1e-9)
        records = frame.astype(object).where(frame.notna(), None).to_dict("records")
        np.testing.assert_array_equal(loaded.predict(records), theirs)
        for i, record in enumerate(records[:60]):  # the server's one-record path
            label, distance = loaded.score_record(record)
            assert label == theirs[i]
            assert distance == pytest.approx(sk_dist[i], rel=1e-7, abs=1e-9)
    np.testing.assert_array_equal(loaded.predict(train_frame), model.predict(train_frame))


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
