"""Segment profiles, names and stable ids across retrains (through the real pipeline)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

import custseg
from custseg.config import Features
from custseg.core.preprocessing import fit_features
from custseg.core.profiles import name_segments, profile_segments
from custseg.core.sample import generate_customers
from custseg.core.schema import infer_schema
from custseg.core.train import train
from custseg.store import registry
from custseg.store.database import Store


def write(path: Path, table: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pacsv.write_csv(table, path)


def run(tmp_path: Path, data: str, **overrides: object) -> custseg.pipeline.runner.Execution:
    cfg = custseg.load_config(str(tmp_path / "pipeline_config.yaml"),
                              overrides={"data_file": data, **overrides})
    return custseg.run(cfg)


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    table, _ = generate_customers(6000, segments=4, seed=11)
    write(tmp_path / "data" / "a.csv", table)
    shuffled = table.take(np.random.default_rng(5).permutation(table.num_rows))
    write(tmp_path / "data" / "shuffled.csv", shuffled)
    (tmp_path / "pipeline_config.yaml").write_text(
        "data_uri: data/\nstore: store\nn_clusters: 4\nn_components: 3\n"
        "endpoint: {autostart: false}\n")
    return tmp_path


def test_profiles_describe_each_segment_in_original_units() -> None:
    table, _ = generate_customers(20_000, segments=3, seed=2)
    transform, enc = fit_features(table, infer_schema(table, Features()))
    result = train(enc, transform, k_candidates=[3], n_components=3)
    labels = result.clustering.labels
    profiles = profile_segments(enc, transform, labels, 3)
    frame = table.to_pandas()
    frame["Income"] = frame["Income"].fillna(frame["Income"].median())
    for p in profiles:
        members = frame[labels == p["id"]]
        assert p["size"] == len(members)
        assert p["numeric"]["Income"]["mean"] == pytest.approx(members["Income"].mean())
        assert p["numeric"]["Income"]["median"] == pytest.approx(members["Income"].median(),
                                                                  rel=0.02)
        assert sum(p["categorical"]["Gender"].values()) == pytest.approx(1.0)
        top = p["differences"][0]
        assert abs(top["z"]) == max(abs(d["z"]) for d in p["differences"])
    names = name_segments(profiles)
    assert len(set(names)) == 3 and all(names)
    assert name_segments(profiles, ["a", "b", "c"]) == ["a", "b", "c"]


def test_sampled_quartiles_and_baseline_deciles_equal_numpys_on_the_sampled_rows() -> None:
    """Quartiles and deciles are computed on sorted copies, bin shares on sorted values:
    exactly numpy's figures on the sampled rows, in their order."""
    from custseg.core import baseline, profiles

    n = profiles.QUANTILE_SAMPLE + 30_000  # a sample, not every row
    table, _ = generate_customers(n, segments=3, seed=4)
    transform, enc = fit_features(table, infer_schema(table, Features()))
    result = train(enc, transform, k_candidates=[3], n_components=2)
    labels, k = result.clustering.labels, 3
    found = profile_segments(enc, transform, labels, k, random_state=3)
    rows = profiles._sample(n, 3)
    assert len(rows) == profiles.QUANTILE_SAMPLE and not rows.flags.writeable
    for j, name in enumerate(transform.numeric):
        values = transform.original(enc, j, rows)
        for c in range(k):
            q1, median, q3 = np.percentile(values[labels[rows] == c], [25, 50, 75])
            assert found[c]["numeric"][name] == {
                "mean": found[c]["numeric"][name]["mean"], "median": median, "q1": q1, "q3": q3}
    base = baseline.training_baseline(
        enc, transform, result.projection, result.clustering.centers, labels,
        missing={}, rows=n, random_state=3)
    index = baseline._sample(n, 3)
    for j, name in enumerate(transform.numeric):
        values = transform.original(enc, j, index)
        edges = np.unique(np.quantile(values, baseline.DECILES)).tolist()
        assert base["numeric"][name]["edges"] == edges
        assert base["numeric"][name]["shares"] == baseline.bin_shares(values, edges)
        assert base["numeric"][name]["mean"] == float(values.mean())


def test_an_identifier_by_name_is_not_read_unless_named_or_read_by_the_previous_version(
        project: Path) -> None:
    """CustomerID is ignored by its name whatever it holds, so a run does not parse it;
    its schema row is the same. A previous version that clustered on it still gets it,
    to give this data its segments (the share keeping their id)."""
    from custseg.engines.local import _unread

    first = run(project, "a.csv")
    cfg = custseg.load_config(str(project / "pipeline_config.yaml"),
                              overrides={"data_file": "a.csv"})
    assert _unread(cfg, None)("CustomerID") and not _unread(cfg, None)("Age")
    rows = first.steps["Train"].outputs.schema["columns"]
    assert [(r["name"], r["role"], r["reason"]) for r in rows if r["name"] == "CustomerID"
            ] == [("CustomerID", "ignored", "identifier (by name)")]
    named = custseg.load_config(str(project / "pipeline_config.yaml"), overrides={
        "features": {"profile_only": ["CustomerID"]}})
    assert not _unread(named, None)("CustomerID")
    clustered_on_id = run(project, "a.csv", features={  # registered, not deployed: its
        "numeric": ["CustomerID", "Age", "Income", "Purchases"], "categorical": ["Gender"]},
        deploy={"require_approval": True})  # callers of the endpoint send no CustomerID
    assert clustered_on_id.model is not None
    assert not _unread(cfg, clustered_on_id.model)("CustomerID")
    again = custseg.run(cfg, no_cache=True)  # matched against the version read CustomerID
    assert again.steps["Train"].outputs.stability["agreement_rows"] == 6000


def test_retraining_on_a_shuffled_copy_keeps_every_id(project: Path) -> None:
    first = run(project, "a.csv")
    second = run(project, "shuffled.csv", random_state=7)  # other seed, other row order
    assert first.model_uri and second.model_uri
    old = custseg.load_model(first.model_uri)
    new = custseg.load_model(second.model_uri)
    table = pacsv.read_csv(project / "data" / "a.csv")
    np.testing.assert_array_equal(old.predict(table), new.predict(table))
    stability = new.meta["stability"]
    assert stability["agreement"] == pytest.approx(1.0, abs=1e-3)
    assert new.meta["segment_names"] == old.meta["segment_names"]
    pkg = registry.package(Store.existing(str(project / "store")),
                           "clustering-model-model-group", 2)
    assert pkg.lineage["stability"]["agreement"] == stability["agreement"]


def test_more_segments_keep_the_old_ids_and_add_new_ones(project: Path) -> None:
    first = run(project, "a.csv", n_clusters=3)
    second = run(project, "a.csv", n_clusters=4, random_state=3)
    assert first.model_uri and second.model_uri
    old = custseg.load_model(first.model_uri)
    new = custseg.load_model(second.model_uri)
    assert sorted(new.meta["stability"]["matched_ids"]) == [0, 1, 2, 3]
    old_centroids = {p["id"]: p["numeric"]["Age"]["mean"] for p in old.meta["segments"]}
    new_centroids = {p["id"]: p["numeric"]["Age"]["mean"] for p in new.meta["segments"]}
    # each kept id's segment is closer to its old self than to any other old segment
    for i in range(3):
        nearest = min(old_centroids, key=lambda j: abs(old_centroids[j] - new_centroids[i]))
        assert nearest == i


def _blobs(path: Path, shares: dict[str, float], seed: int, n: int = 4000) -> None:
    """Spend and Visits around three centres (A, B, C), each with its share of `n` rows."""
    centres = {"A": (100.0, 2.0), "B": (1000.0, 10.0), "C": (5000.0, 30.0)}
    rng = np.random.default_rng(seed)
    spend, visits = [], []
    for name, share in shares.items():
        m = int(n * share)
        x, y = centres[name]
        spend += rng.normal(x, x * 0.05, m).round(2).tolist()
        visits += rng.normal(y, y * 0.05, m).round(2).tolist()
    write(path, pa.table({"Spend": spend, "Visits": visits}))


def test_the_small_segment_warning_names_the_segment_by_its_matched_id(tmp_path: Path) -> None:
    """A retrain whose small segment (A, 1%) was the largest before (id 0): the warning
    names segment 0 as the model does, not its position before the ids were matched."""
    _blobs(tmp_path / "data" / "v1.csv", {"A": 0.6, "B": 0.3, "C": 0.1}, seed=4)
    _blobs(tmp_path / "data" / "v2.csv", {"A": 0.01, "B": 0.6, "C": 0.39}, seed=41)
    (tmp_path / "pipeline_config.yaml").write_text(
        "data_uri: data/\nstore: store\nn_clusters: 3\nn_components: auto\n"
        "endpoint: {autostart: false}\n")
    run(tmp_path, "v1.csv")
    second = run(tmp_path, "v2.csv")
    assert second.model_uri
    model = custseg.load_model(second.model_uri)
    sizes = {p["id"]: p["size"] for p in model.meta["segments"]}
    small = min(sizes, key=sizes.__getitem__)
    assert sizes[small] == 40 and small == 0  # A kept its id 0
    assert f"segment {small} holds under 2% of the customers" in model.meta["warnings"]
    assert not any(f"segment {i} holds" in w for i in sizes if i != small
                   for w in model.meta["warnings"])


def test_a_log_the_config_asked_for_is_not_reported_as_skew(tmp_path: Path) -> None:
    _blobs(tmp_path / "data" / "v1.csv", {"A": 0.6, "B": 0.3, "C": 0.1}, seed=4)
    (tmp_path / "pipeline_config.yaml").write_text(
        "data_uri: data/\nstore: store\nn_clusters: 3\nendpoint: {autostart: false}\n")
    inferred = custseg.load_model(run(tmp_path, "v1.csv").model_uri or "")
    forced = custseg.load_model(run(tmp_path, "v1.csv", **{
        "features.transforms": {"Visits": "log"}}).model_uri or "")
    assert dict(zip(forced.transform.numeric, forced.transform.functions, strict=True)
                )["Visits"] != "none"  # the config's log was applied ...
    skew = [w for w in forced.meta["warnings"] if w.startswith("skewed column")]
    assert all("Visits" not in w for w in skew)  # ... and is not reported as a finding
    assert skew == [w.replace("columns", "column").replace(", Visits", "")
                    for w in inferred.meta["warnings"] if w.startswith("skewed column")]
