"""The drift figures (`monitor/drift`) and the training baseline (`core/baseline`) as
pure functions: PSI and the chi-square test against their textbook definitions and
scipy, bins on training deciles, each kind of shift flagged and nothing when none, over
seeds; and the capture folder's rotation on real files."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats

from custseg.config import MonitorOptions
from custseg.core.baseline import bin_shares
from custseg.io.capture_files import CaptureFolder, parquet_bytes
from custseg.monitor.drift import NumericValues, Window, chi2_p_value, compare, psi

LIMITS = MonitorOptions()


def test_psi_is_the_textbook_sum_and_zero_for_equal_shares() -> None:
    e, a = [0.5, 0.3, 0.2], [0.4, 0.4, 0.2]
    expected = sum((x - y) * np.log(x / y) for x, y in zip(a, e, strict=True))
    assert psi(e, a) == pytest.approx(expected)
    assert psi(e, e) == 0.0
    assert psi([0.5, 0.5, 0.0], [0.5, 0.4, 0.1]) > 0.5  # an empty training bin is floored


def test_chi2_p_value_agrees_with_scipy() -> None:
    counts, shares = [120, 90, 40], [0.5, 0.3, 0.2]
    expected = stats.chisquare(counts, np.array(shares) * sum(counts)).pvalue
    assert chi2_p_value(counts, shares) == pytest.approx(expected)
    assert chi2_p_value([10, 0], [1.0, 0.0]) is None  # one segment: no test
    assert chi2_p_value([10, 5, 1], [0.6, 0.4, 0.0]) == 0.0  # a segment training never had


def test_chi2_against_training_counts_is_scipys_test_of_homogeneity() -> None:
    counts, shares, rows = [120, 90, 40], [0.5, 0.3, 0.2], 1000
    table = np.array([counts, np.array(shares) * rows])
    expected = stats.chi2_contingency(table, correction=False).pvalue
    assert chi2_p_value(counts, shares, rows) == pytest.approx(expected)
    assert chi2_p_value(counts, shares, rows) > chi2_p_value(counts, shares)
    # against a huge training set the two tests agree
    assert chi2_p_value(counts, shares, 10**9) == pytest.approx(chi2_p_value(counts, shares))


def test_chi2_false_alarms_stay_near_the_nominal_rate_for_windows_larger_than_training(
        ) -> None:
    """Training and window drawn from one population, the window 5x the training rows:
    against the training shares as if exact, p < 0.001 on over 40% of the windows (the
    statistic is about 6x too big); against the training counts, at the nominal 0.1%
    (none of 400 here)."""
    rng = np.random.default_rng(7)
    truth, rows, n = np.array([0.5, 0.3, 0.15, 0.05]), 2000, 10_000
    naive = fair = 0
    for _ in range(400):
        shares = (rng.multinomial(rows, truth) / rows).tolist()
        counts = rng.multinomial(n, truth).tolist()
        naive += chi2_p_value(counts, shares) < 0.001
        fair += chi2_p_value(counts, shares, rows) < 0.001
    assert naive > 40 and fair <= 2


def test_bins_take_an_edge_read_back_a_few_ulps_off_as_the_value() -> None:
    """4 read back through log1p/expm1 as 3.9999999999999996: the traffic's 4s fall in the
    same bin as the training 4s."""
    four = float(np.expm1(np.log1p(np.float64(4.0) / 0.7)) * 0.7)
    assert four != 4.0
    assert bin_shares(np.array([3.0, 4.0, 4.0, 5.0]), [four]) == [0.75, 0.25]
    assert bin_shares(np.array([0.0, 1e-6, 2.0]), [0.0]) == pytest.approx([1 / 3, 2 / 3])


def test_bins_are_closed_on_the_right_like_deciles() -> None:
    assert bin_shares(np.array([1.0, 2.0, 2.0, 3.0]), [1.0, 2.0]) == [0.25, 0.5, 0.25]
    assert bin_shares(np.array([]), [1.0]) == [0.0, 0.0]


def _baseline(rng: np.random.Generator) -> tuple[dict, np.ndarray]:
    train = rng.normal(50, 10, 20_000)
    edges = np.unique(np.quantile(train, np.linspace(0.1, 0.9, 9))).tolist()
    baseline = {
        "numeric": {"x": {"edges": edges, "shares": bin_shares(train, edges),
                          "missing_share": 0.01}},
        "categorical": {"c": {"levels": {"a": 0.6, "b": 0.4}, "missing_share": 0.0}},
        "segments": [0.5, 0.3, 0.2],
        "distance": {"p50": 1.0, "p95": 2.0},
    }
    return baseline, train


def _window(rng: np.random.Generator, n: int, shift: float = 0.0, new: float = 0.0,
            segments: tuple[float, ...] = (0.5, 0.3, 0.2), far: float = 0.05) -> Window:
    x = rng.normal(50 + shift, 10, n)
    c = rng.choice(["a", "b", "z"], n, p=[0.6 * (1 - new), 0.4 * (1 - new), new])
    keys, counts = np.unique(c, return_counts=True)
    distances = np.where(rng.random(n) < far, 3.0, 1.0)
    return Window(rows=n, numeric={"x": NumericValues(x, missing=0)},
                  categorical={"c": dict(zip(keys.tolist(), counts.tolist(), strict=True))},
                  fields=["x", "c"], clusters=rng.choice(3, n, p=segments),
                  distances=distances)


@pytest.mark.parametrize("seed", range(5))
def test_a_window_from_the_training_population_flags_nothing(seed: int) -> None:
    rng = np.random.default_rng(seed)
    baseline, _ = _baseline(rng)
    report = compare(baseline, _window(rng, 3000), LIMITS)
    assert report.alerts == [] and not report.drift and report.enough


@pytest.mark.parametrize(("change", "alert"), [
    ({"shift": 8.0}, "x: PSI"),
    ({"new": 0.2}, "c: 20"),
    ({"segments": (0.2, 0.3, 0.5)}, "segment shares: PSI"),
    ({"far": 0.3}, "distance: "),
])
def test_each_kind_of_shift_is_flagged(change: dict, alert: str) -> None:
    rng = np.random.default_rng(3)
    baseline, _ = _baseline(rng)
    report = compare(baseline, _window(rng, 3000, **change), LIMITS)
    assert any(a.startswith(alert) for a in report.alerts), report.alerts


def test_too_few_records_show_figures_but_flag_nothing() -> None:
    rng = np.random.default_rng(4)
    baseline, _ = _baseline(rng)
    report = compare(baseline, _window(rng, 50, shift=30.0), LIMITS)
    assert not report.enough and report.alerts == []
    assert report.features[0].psi is not None and report.features[0].psi > 1


@pytest.fixture(params=["local", "s3"])
def capture_folders(request: pytest.FixtureRequest, tmp_path: Path
                    ) -> Callable[[], CaptureFolder]:
    """Views of one endpoint's capture folder (each as a worker of its own sees it), in a
    local artifact folder or under s3:// (a real moto server)."""
    if request.param == "local":
        return lambda: CaptureFolder(str(tmp_path), "e")
    bucket = request.getfixturevalue("make_bucket")()
    endpoint_url = request.getfixturevalue("moto_server")
    return lambda: CaptureFolder(f"s3://{bucket}/artifacts", "e", endpoint_url)


@pytest.fixture
def capture_folder(capture_folders: Callable[[], CaptureFolder]) -> CaptureFolder:
    return capture_folders()


def test_the_capture_folder_keeps_within_its_size_oldest_first(
        capture_folder: CaptureFolder, tmp_path: Path) -> None:
    folder = capture_folder
    data = parquet_bytes(pa.table({"x": np.arange(2000)}))
    names = [f"2026-01-0{day}/000000.000-1-{i}.parquet" for day in (1, 2) for i in (1, 2)]
    for name in names:
        folder.write(name, data)
    assert [f.path for f in folder.files()] == names
    assert folder.keep_within(2 * len(data) + 10) == 2
    assert [f.path for f in folder.files()] == names[2:]
    assert not list(tmp_path.glob("capture/e/*/.capture-*"))  # no temporary files left


def test_rotation_lists_the_folder_once_then_keeps_count(
        capture_folders: Callable[[], CaptureFolder], monkeypatch: pytest.MonkeyPatch) -> None:
    """Writing and rotating many files lists the folder once, not once per file; the
    files another worker writes are seen at the next listing, RELIST_SECONDS later."""
    from custseg.io import capture_files

    folder = capture_folders()
    data = parquet_bytes(pa.table({"x": np.arange(500)}))
    listings: list[int] = []
    real_files = folder.files
    monkeypatch.setattr(folder, "files", lambda: listings.append(1) or real_files())
    for i in range(12):
        folder.write(f"2026-01-01/0000{i:02d}.000-1-1.parquet", data)
        folder.keep_within(4 * len(data))
    assert len(listings) == 1
    assert [f.path for f in real_files()] == [
        f"2026-01-01/0000{i:02d}.000-1-1.parquet" for i in range(8, 12)]
    capture_folders().write("2026-01-01/000100.000-2-1.parquet", data)
    assert folder.keep_within(4 * len(data)) == 0  # not listed again yet
    monkeypatch.setattr(capture_files, "RELIST_SECONDS", 0.0)
    assert folder.keep_within(4 * len(data)) == 1  # listed: the oldest of five removed
    assert len(listings) == 2
    assert len(real_files()) == 4


def test_a_window_is_read_from_the_days_that_can_hold_it(capture_folder: CaptureFolder
                                                         ) -> None:
    """Files of the day before the window are read too (a file may span midnight), and
    filtered by time; a field typed differently in two files is read as text."""
    def table(day: int, hour: int, age: list[object]) -> pa.Table:
        when = datetime(2026, 1, day, hour, tzinfo=UTC)
        return pa.table({"time": pa.array([when] * len(age), pa.timestamp("ms", "UTC")),
                         "input.Age": pa.array(age)})

    capture_folder.write("2026-01-01/100000.000-1-1.parquet", parquet_bytes(table(1, 10, [1.0])))
    capture_folder.write("2026-01-01/235959.000-1-2.parquet",
                         parquet_bytes(table(2, 0, [2.0, 3.0])))  # spans midnight
    capture_folder.write("2026-01-02/120000.000-1-3.parquet",
                         parquet_bytes(table(2, 12, ["x"])))
    window = capture_folder.read_since(datetime(2026, 1, 2, tzinfo=UTC))
    assert window is not None
    assert window.column("input.Age").to_pylist() == ["2", "3", "x"]
    assert capture_folder.read_since(datetime(2026, 1, 3, tzinfo=UTC)) is None


def test_the_capture_writer_keeps_fields_of_mixed_types_as_text(tmp_path: Path) -> None:
    """Records as requests send them (a number as text from a CSV request, an object, a
    field some records lack) written by a real writer thread and read back."""
    from custseg.serving.capture import CaptureWriter
    from custseg.serving.settings import CaptureSettings

    writer = CaptureWriter(CaptureSettings(sample=1.0, pii=("Email",), pii_action="omit"),
                           str(tmp_path), key=b"").start()
    records = [{"Age": 30, "Gender": "M", "Email": "a@b"}, {"Age": "31", "Gender": 2},
               {"Age": None, "Gender": "F", "Tags": {"vip": True}}]
    writer.offer("e", "g/1", ["low", "high"], [(records, [0, 1, 1], [0.5, 1.5, 2.5])],
                 body=b"x" * 100, content_type="application/json", records=3)
    writer.close()
    table = CaptureFolder(str(tmp_path), "e").read_since(datetime(2000, 1, 1, tzinfo=UTC))
    assert table is not None
    rows = table.to_pylist()
    assert [r["input.Age"] for r in rows] == ["30", "31", None]
    assert [r["input.Gender"] for r in rows] == ["M", "2", "F"]
    assert rows[2]["input.Tags"] == '{"vip":true}' and "input.Email" not in table.column_names
    assert [(r["cluster"], r["segment"], r["distance"]) for r in rows] == [
        (0, "low", 0.5), (1, "high", 1.5), (1, "high", 2.5)]
    assert writer.counts.items() == [("e", "captured", 3)]


@pytest.mark.parametrize("content_type", ["application/json", "text/csv"])
def test_without_pii_requests_are_kept_as_sent_and_read_back_as_records(
        tmp_path: Path, content_type: str) -> None:
    """An endpoint without PII fields captures each request's body with its answers (a
    row per request); reading the folder back parses the bodies into the same records
    the endpoint scored, answers beside them."""
    from custseg.serving.capture import CaptureWriter
    from custseg.serving.capture_table import expand_requests
    from custseg.serving.settings import CaptureSettings
    from custseg.serving.wire import parse_body

    columns = ["Age", "Gender"]
    if content_type == "text/csv":
        body = b"Age,Gender\n30,M\n31,F\n"
    else:
        body = b'{"instances": [{"Age": 30, "Gender": "M"}, {"Age": 31, "Gender": "F"}]}'
    records = parse_body(body, content_type, columns)
    writer = CaptureWriter(CaptureSettings(sample=1.0), str(tmp_path), key=b"").start()
    writer.offer("e", "g/1", ["low", "high"], [(records, [1, 0], [0.25, 0.75])],
                 body=body, content_type=content_type, records=2)
    writer.offer("e", "g/1", ["low", "high"], [([{"Age": 40, "Gender": "M"}], [1], [0.5])],
                 body=b'{"Age": 40, "Gender": "M"}', content_type="application/json",
                 records=1)
    writer.close()
    folder = CaptureFolder(str(tmp_path), "e")
    assert folder.read_since(datetime(2000, 1, 1, tzinfo=UTC)) is None  # not expanded
    table = folder.read_since(datetime(2000, 1, 1, tzinfo=UTC),
                              lambda t: expand_requests(t, columns))
    assert table is not None
    rows = table.to_pylist()
    ages = [30.0, 31.0, 40.0] if content_type == "application/json" else ["30", "31", "40"]
    assert [(r["input.Age"], r["input.Gender"]) for r in rows] == list(
        zip(ages, ["M", "F", "M"], strict=True))  # CSV numbers arrive as text, as sent
    assert [(r["cluster"], r["segment"], r["distance"]) for r in rows] == [
        (1, "high", 0.25), (0, "low", 0.75), (1, "high", 0.5)]
    assert len({r["request"] for r in rows}) == 2 and {r["model_version"] for r in rows} == {
        "g/1"}
    assert writer.counts.items() == [("e", "captured", 3)]
