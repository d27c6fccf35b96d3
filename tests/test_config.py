"""The pipeline config: defaults, the documented forms of each key, path resolution,
`-p NAME=VALUE` overrides, and error messages that name the key, the expectation and the
value found. Every test reads a real YAML file."""

from __future__ import annotations

from pathlib import Path

import pytest

from custseg.config import KRange, load_config, parse_override
from custseg.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def _write(folder: Path, text: str, name: str = "pipeline_config.yaml") -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _overrides(*texts: str) -> dict[str, object]:
    return dict(parse_override(t) for t in texts)


# -- defaults and documented forms ---------------------------------------------------------

def test_defaults_follow_the_spec(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, "data_uri: data/\n"))
    assert (cfg.project_name, cfg.environment, cfg.region) == ("clustering-model", "dev",
                                                               "us-east-1")
    assert (cfg.bucket_name, cfg.role_arn, cfg.lambda_role_arn) == (None, None, None)
    assert (cfg.n_clusters, cfg.n_components, cfg.data_file) == (3, 1, "customers.csv")
    assert cfg.training_instance_type == "ml.m5.large"
    assert cfg.inference_instance_type == "ml.t2.medium"
    assert cfg.csv.delimiter == "auto"
    assert cfg.s3.endpoint_url is None
    assert (cfg.features.numeric, cfg.features.categorical, cfg.features.ignore) == (
        None, None, [])
    assert cfg.tuning.metric == "silhouette"
    assert cfg.random_state == 0
    assert (cfg.store, cfg.artifacts, cfg.engine) == (".custseg", None, "local")
    assert cfg.spark.master == "local[*]"
    assert (cfg.endpoint.host, cfg.endpoint.port, cfg.endpoint.workers,
            cfg.endpoint.api_key_env) == ("127.0.0.1", 8080, 2, None)
    assert cfg.deploy.require_approval is False
    assert cfg.k_candidates == [3]
    assert Path(cfg.store_location) == tmp_path / ".custseg"
    assert Path(cfg.artifacts_location) == tmp_path / ".custseg" / "artifacts"


def test_the_committed_example_config_is_valid() -> None:
    cfg = load_config(REPO / "pipeline_config.yaml")
    assert cfg.data_location == str(REPO / "data" / "customers.csv")
    assert cfg.features.numeric == ["Age", "Income", "Purchases"]
    assert cfg.features.categorical == ["Gender"]
    assert cfg.features.ignore == ["CustomerID"]
    assert (cfg.n_clusters, cfg.n_components) == (3, 1)


def test_an_empty_config_needs_only_data_uri(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data_uri: required key is missing"):
        load_config(_write(tmp_path, ""))


@pytest.mark.parametrize(
    ("value", "expected", "candidates"),
    [
        ("4", 4, [4]),
        ("2", 2, [2]),
        ("auto", "auto", list(range(2, 11))),
        ("{min: 2, max: 5}", KRange(min=2, max=5), [2, 3, 4, 5]),
        ("{min: 3, max: 3}", KRange(min=3, max=3), [3]),
    ],
    ids=["int", "int-2", "auto", "range", "range-of-one"],
)
def test_n_clusters_forms(tmp_path: Path, value: str, expected: object,
                          candidates: list[int]) -> None:
    cfg = load_config(_write(tmp_path, f"data_uri: data/\nn_clusters: {value}\n"))
    assert cfg.n_clusters == expected
    assert cfg.k_candidates == candidates


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", 1), ("3", 3), ("0.9", 0.9), ("0.5", 0.5), ("auto", "auto")],
    ids=["int-1", "int-3", "fraction-0.9", "fraction-0.5", "auto"],
)
def test_n_components_forms(tmp_path: Path, value: str, expected: object) -> None:
    cfg = load_config(_write(tmp_path, f"data_uri: data/\nn_components: {value}\n"))
    assert cfg.n_components == expected
    assert type(cfg.n_components) is type(expected)


# -- where things live -----------------------------------------------------------------------

def test_relative_paths_resolve_against_the_config_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    path = _write(project, "data_uri: data/\nstore: state\nartifacts: ../models\n",
                  name="conf/pipeline_config.yaml")
    (project / "conf" / "data").mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the working folder must not matter
    cfg = load_config(path)
    assert cfg.data_location == str(project / "conf" / "data" / "customers.csv")
    assert cfg.store_location == str(project / "conf" / "state")
    assert cfg.artifacts_location == str(project / "models")


def test_a_relative_config_path_resolves_against_its_own_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "conf" / "data").mkdir(parents=True)
    _write(tmp_path, "data_uri: data\n", name="conf/c.yaml")
    monkeypatch.chdir(tmp_path)
    cfg = load_config("conf/c.yaml")
    assert cfg.data_location == str(tmp_path / "conf" / "data" / "customers.csv")


@pytest.mark.parametrize(
    ("data_uri", "data_file", "expected"),
    [
        ("data/", "customers.csv", "{root}/data/customers.csv"),  # a folder: joined
        ("data/other.csv", "customers.csv", "{root}/data/other.csv"),  # a file: as is
        ("data/", None, "{root}/data"),  # a folder with no data_file: every CSV in it
        ("{root}/data", "x.csv", "{root}/data/x.csv"),  # absolute stays absolute
        ("s3://bucket/data/", "customers.csv", "s3://bucket/data/customers.csv"),
        ("s3://bucket/data/part.csv", "customers.csv", "s3://bucket/data/part.csv"),
        ("s3://bucket/data/", None, "s3://bucket/data/"),
        ("s3a://bucket/data/", "customers.csv", "s3://bucket/data/customers.csv"),
    ],
    ids=["folder", "file", "folder-no-data-file", "absolute", "s3-prefix", "s3-file",
         "s3-prefix-no-data-file", "s3a-is-s3"],
)
def test_data_location_joins_data_uri_and_data_file(
        tmp_path: Path, data_uri: str, data_file: str | None, expected: str) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "other.csv").write_text("a\n1\n")
    text = f"data_uri: {data_uri.format(root=tmp_path)}\ndata_file: {data_file or 'null'}\n"
    cfg = load_config(_write(tmp_path, text))
    assert cfg.data_location == expected.format(root=tmp_path)


# -- overrides -------------------------------------------------------------------------------

BASE = """\
data_uri: data/
n_clusters: 3
tuning: {metric: silhouette, n_init: 3}
"""


@pytest.mark.parametrize(
    ("override", "check"),
    [
        ("n_clusters=4", lambda c: c.n_clusters == 4 and c.k_candidates == [4]),
        ("n_clusters=auto", lambda c: c.n_clusters == "auto"),
        ("n_clusters={min: 2, max: 5}", lambda c: c.k_candidates == [2, 3, 4, 5]),
        ("n_components=0.8", lambda c: c.n_components == 0.8),
        ("tuning.metric=davies_bouldin",
         lambda c: c.tuning.metric == "davies_bouldin" and c.tuning.n_init == 3),
        ("csv.delimiter=;", lambda c: c.csv.delimiter == ";"),
        ("s3.endpoint_url=http://127.0.0.1:9000",
         lambda c: c.s3.endpoint_url == "http://127.0.0.1:9000"),
        ("features={numeric: [Age], ignore: [CustomerID]}",
         lambda c: c.features.numeric == ["Age"] and c.features.ignore == ["CustomerID"]),
        ("data_file=", lambda c: c.data_file is None),
    ],
    ids=["int", "auto", "mapping", "fraction", "dotted-keeps-siblings", "dotted-new-section",
         "url", "mapping-section", "empty-is-null"],
)
def test_overrides(tmp_path: Path, override: str, check: object) -> None:
    path = _write(tmp_path, BASE)
    cfg = load_config(path, _overrides(override))
    assert callable(check) and check(cfg), cfg
    assert path.read_text() == BASE  # the file is untouched
    assert load_config(path).n_clusters == 3  # and so is the next load


def test_several_overrides_apply_together(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, BASE),
                      _overrides("n_clusters=5", "random_state=7", "tuning.n_init=1"))
    assert (cfg.n_clusters, cfg.random_state, cfg.tuning.n_init) == (5, 7, 1)
    assert cfg.parameters()["n_clusters"] == 5


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("n_clusters", ["'n_clusters'", "expected NAME=VALUE"]),
        ("=4", ["'=4'", "expected NAME=VALUE"]),
        ("n_clusters=[1, 2", ["n_clusters", "not valid YAML"]),
    ],
    ids=["no-equals", "no-name", "bad-yaml-value"],
)
def test_malformed_overrides(override: str, expected: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        parse_override(override)
    for text in expected:
        assert text in str(info.value)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("n_cluster=4", ["unknown key 'n_cluster'", "did you mean 'n_clusters'"]),
        ("tuning.metrc=silhouette", ["unknown key 'tuning.metrc'", "did you mean 'metric'"]),
        ("tuning.metric=accuracy", ["tuning.metric", "'silhouette'", "'accuracy'"]),
        ("n_clusters=1", ["n_clusters", ">= 2", "found 1"]),
        ("n_clusters.min=2", ["override n_clusters.min", "n_clusters is not a mapping"]),
    ],
    ids=["unknown", "unknown-nested", "bad-value-nested", "bad-value", "into-a-scalar"],
)
def test_invalid_overrides_name_the_key(tmp_path: Path, override: str,
                                        expected: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, BASE), _overrides(override))
    for text in expected:
        assert text in str(info.value)


# -- errors ----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # unknown keys: the key path, a "did you mean", the allowed keys
        ("n_cluster: 4", ["unknown key 'n_cluster'", "did you mean 'n_clusters'",
                          "allowed: project_name"]),
        ("tuning: {metrc: silhouette}", ["unknown key 'tuning.metrc'",
                                         "did you mean 'metric'", "allowed: metric"]),
        ("endpoint: {prot: 80}", ["unknown key 'endpoint.prot'", "did you mean 'port'"]),
        ("zzz: 1", ["unknown key 'zzz'", "allowed:"]),
        # wrong types and values: the key path, what was expected, what was found
        ("random_state: abc", ["random_state:", "valid integer", "found 'abc'"]),
        ("tuning: fast", ["tuning:", "valid dictionary", "found 'fast'"]),
        ("tuning: {metric: accuracy}", ["tuning.metric:", "'silhouette'",
                                        "'davies_bouldin'", "found 'accuracy'"]),
        ("endpoint: {port: 99999}", ["endpoint.port:", "65535", "found 99999"]),
        ("engine: dask", ["engine:", "'local'", "'spark'", "found 'dask'"]),
        ("csv: {delimiter: ab}", ["csv.delimiter:", "single character", "found 'ab'"]),
        ("features: {numeric: Age}", ["features.numeric:", "list", "found 'Age'"]),
        ("project_name: 'my project'", ["project_name:", "found 'my project'"]),
        # n_clusters below 2 or malformed
        ("n_clusters: 1", ["n_clusters:", "integer >= 2", "found 1"]),
        ("n_clusters: 0", ["n_clusters:", "integer >= 2", "found 0"]),
        ("n_clusters: -3", ["n_clusters:", "integer >= 2", "found -3"]),
        ("n_clusters: many", ["n_clusters:", "'auto'", "found 'many'"]),
        ("n_clusters: 2.5", ["n_clusters:", "integer >= 2", "found 2.5"]),
        ("n_clusters: true", ["n_clusters:", "integer >= 2", "found True"]),
        ("n_clusters: {min: 1, max: 5}", ["n_clusters:", ">= 2", "'min': 1"]),
        ("n_clusters: {min: 5, max: 2}", ["n_clusters:", "min <= max", "'min': 5"]),
        ("n_clusters: {min: 2}", ["n_clusters:", "{min: INT, max: INT}", "{'min': 2}"]),
        # n_components out of range
        ("n_components: 0", ["n_components:", "integer >= 1", "found 0"]),
        ("n_components: -2", ["n_components:", "integer >= 1", "found -2"]),
        ("n_components: 1.0", ["n_components:", "fraction in (0, 1)", "found 1.0"]),
        ("n_components: 1.5", ["n_components:", "fraction in (0, 1)", "found 1.5"]),
        ("n_components: 0.0", ["n_components:", "fraction in (0, 1)", "found 0.0"]),
        ("n_components: all", ["n_components:", "'auto'", "found 'all'"]),
        ("n_components: true", ["n_components:", "integer >= 1", "found True"]),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_invalid_values_name_key_expectation_and_value(
        tmp_path: Path, text: str, expected: list[str]) -> None:
    path = _write(tmp_path, f"data_uri: data/\n{text}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message
    for part in expected:
        assert part in message, message
    assert "\n" not in message
    assert info.value.exit_code == 2


def test_several_errors_are_reported_together(tmp_path: Path) -> None:
    path = _write(tmp_path, "data_uri: data/\nn_clusters: 1\nn_components: 0\nfoo: 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    for key in ("n_clusters:", "n_components:", "unknown key 'foo'"):
        assert key in str(info.value)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("data_uri: data/\nn_clusters: [3\nn_components: 1\n", 3),
        ("data_uri: data/\ntuning:\n  metric: silhouette\n n_init: 3\n", 4),
        ("data_uri: data/\nn_clusters: 3\n\tn_components: 1\n", 3),
    ],
    ids=["unclosed-bracket", "bad-indent", "tab"],
)
def test_malformed_yaml_names_the_line(tmp_path: Path, text: str, line: int) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert f"{path} is not valid YAML at line {line}" in str(info.value)


@pytest.mark.parametrize("text", ["- a\n- b\n", "just text\n", "42\n"],
                         ids=["list", "string", "number"])
def test_the_top_level_must_be_a_mapping(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match="expected a mapping of keys at the top level"):
        load_config(_write(tmp_path, text))


@pytest.mark.parametrize("uri", ["gs://bucket/data/", "hdfs://namenode/data", "file:///data"])
def test_a_data_uri_of_another_scheme_is_refused(tmp_path: Path, uri: str) -> None:
    """Not taken for a local folder named 'gs:' (then 'data not found')."""
    scheme = uri.split(":")[0]
    with pytest.raises(ConfigError, match=rf"data_uri: expected a local folder or file, or "
                                          rf"s3://bucket/prefix \(s3a:// too\); found "
                                          rf"{scheme}:// in '{uri}'"):
        load_config(_write(tmp_path, f"data_uri: {uri}\n"))


def test_missing_data_uri(tmp_path: Path) -> None:
    path = _write(tmp_path, "n_clusters: 3\n")
    with pytest.raises(ConfigError, match=r"data_uri: required key is missing"):
        load_config(path)


def test_missing_config_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "pipeline_config.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    assert f"config file not found: {missing}" in str(info.value)
    assert "-c CONFIG" in str(info.value)
