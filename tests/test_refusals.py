"""Settings custseg cannot honour are refused, never accepted and ignored: an engine it
cannot run, a store URL it cannot open. Real `custseg` processes on real project folders."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from conftest import StoreProject


@pytest.mark.parametrize("command", [("run",), ("deploy",)])
def test_an_engine_that_cannot_run_is_refused_before_any_work(
        store_project: Callable[..., StoreProject], command: tuple[str, ...]) -> None:
    """Spark without a JVM: a process whose PATH holds no java and no JAVA_HOME."""
    project = store_project(engine="spark")
    env = {"PATH": "/nonexistent", "JAVA_HOME": ""}
    result = project.cli(*command, env=env)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "engine: 'spark' needs Java 17" in result.stderr
    assert "set engine: local" in result.stderr
    assert not project.store.exists()  # no store, no execution recorded as if it had run


@pytest.mark.parametrize(("command", "target", "says"), [
    (("run",), "sagemaker", "--target sagemaker needs bucket_name, role_arn, "
                            "lambda_role_arn in the config"),
    (("deploy",), "sagemaker", "--target sagemaker needs bucket_name, role_arn, "
                               "lambda_role_arn in the config"),
    (("run",), "azure", "--target 'azure': expected one of local, sagemaker"),
    (("deploy",), "azure", "--target 'azure': expected one of local, sagemaker"),
])
def test_a_target_that_cannot_run_the_pipeline_is_refused_before_any_work(
        store_project: Callable[..., StoreProject], command: tuple[str, ...], target: str,
        says: str) -> None:
    project = store_project()
    result = project.cli(*command, "--target", target)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert says in " ".join(result.stderr.split())
    assert not project.store.exists()


def test_an_engine_needing_a_missing_extra_names_the_extra(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    """Once an engine is built but its library is not installed: an install hint."""
    import custseg.engines as engines
    from custseg.config import Config
    from custseg.errors import ConfigError

    monkeypatch.setattr(engines, "BUILT", ("local", "spark"))
    monkeypatch.setattr(engines, "REQUIRES", {"local": None,
                                              "spark": ("no_such_module_xyz", "spark")})
    cfg = Config.model_validate({"data_uri": "x.csv", "engine": "spark"})
    with pytest.raises(ConfigError, match=r"uv sync --extra spark"):
        engines.engine_for(cfg)


@pytest.mark.parametrize(("url", "reason"), [
    ("postgresql://analyst:s3cret-pw@db.example.com:5432/custseg",
     "the URL carries a password; remove it from the URL and set store_password_env"),
    ("mysql://root:s3cret-pw@localhost/custseg", "a mysql store is not supported"),
])
@pytest.mark.parametrize("command", [("run",), ("models", "list")])
def test_a_database_url_store_is_refused_and_its_password_never_printed(
        store_project: Callable[..., StoreProject], url: str, reason: str,
        command: tuple[str, ...]) -> None:
    project = store_project(store=url)
    result = project.cli(*command)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert reason in result.stderr
    assert "s3cret-pw" not in result.stderr + result.stdout
    assert ":***@" in result.stderr
    # nothing named after the URL was created next to the config
    assert sorted(p.name for p in project.root.iterdir()) == ["data", "pipeline_config.yaml"]


@pytest.mark.parametrize(("override", "says"), [
    ("features.transforms={Gender: log}",
     "features.transforms.Gender: 'log' applies to date or numeric columns, but Gender is "
     "categorical (declared categorical)"),
    ("features.transforms={CustomerID: clip}",
     "features.transforms.CustomerID: 'clip' applies to date or numeric columns, but "
     "CustomerID is ignored (features.ignore)"),
    ("value_labels={Nope: {1: a}}",
     "value_labels.Nope: no such column in the data; columns: CustomerID, Age, Income, "
     "Purchases, Gender"),
    ("value_labels={Age: {30: thirty}}",
     "value_labels.Age: words for codes apply to categorical columns, but Age is numeric "
     "(declared numeric)"),
    ("random_state=-1", "random_state: Input should be greater than or equal to 0, found -1"),
])
def test_a_setting_that_would_not_apply_to_its_column_is_refused(
        store_project: Callable[..., StoreProject], override: str, says: str) -> None:
    """Recorded in the lineage, then never applied: refused instead, nothing registered."""
    project = store_project()
    result = project.cli("run", "-p", override)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert says in " ".join(result.stderr.split())
    if project.db.exists():
        assert project.query("SELECT COUNT(*) AS n FROM model_packages")[0]["n"] == 0


def test_value_labels_for_codes_the_column_lacks_are_a_warning(
        store_project: Callable[..., StoreProject]) -> None:
    project = store_project()
    out = project.json("run", "-p", "value_labels={Gender: {Male: Men, Robot: Robots}}")
    assert "value_labels.Gender: code Robot not among its levels (Female, Male, Other)" in \
        out["warnings"]
    assert not any("Male" in w and "Robot" not in w for w in out["warnings"])


def test_an_all_missing_profile_only_column_is_described_as_missing(
        store_project: Callable[..., StoreProject]) -> None:
    """It crashed the fit (an empty dictionary of levels)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    project = store_project()
    table = pacsv.read_csv(project.data)
    table = table.append_column("Notes", pa.array([None] * table.num_rows, pa.string()))
    pacsv.write_csv(table, project.data)
    out = project.json("run", "-p", "features.profile_only=[Notes]")
    assert out["status"] == "Succeeded"
