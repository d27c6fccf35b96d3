"""Batch scoring (`custseg predict`): real files, real processes, a real moto S3 server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

import custseg

CUSTSEG = Path(sys.executable).parent / "custseg"


def cli(cwd: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CUSTSEG), *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("predict")
    assert cli(root, "sample", "--rows", "3000", "--seed", "4", "-o", "customers.csv"
               ).returncode == 0
    (root / "pipeline_config.yaml").write_text(
        "data_uri: customers.csv\nstore: store\nendpoint: {autostart: false}\n")
    result = cli(root, "run")
    assert result.returncode == 0, result.stderr
    return root


REF = "clustering-model-model-group/1"


@pytest.mark.parametrize(("source", "target"), [("csv", "csv"), ("csv", "parquet"),
                                                ("parquet", "csv"), ("csv.gz", "parquet")])
def test_output_is_the_input_plus_cluster_segment_distance(trained: Path, source: str,
                                                           target: str) -> None:
    table = pacsv.read_csv(trained / "customers.csv")
    src = trained / f"in.{source}"
    if source == "parquet":
        pq.write_table(table, src)
    elif source == "csv.gz":
        import gzip

        src.write_bytes(gzip.compress((trained / "customers.csv").read_bytes()))
    else:
        src.write_bytes((trained / "customers.csv").read_bytes())
    out = trained / f"out-{source}.{target}"
    result = cli(trained, "predict", "--model", REF, "--input", src, "--output", out)
    assert result.returncode == 0, result.stderr
    assert "Scored 3,000 of 3,000 rows" in result.stdout
    scored = pq.read_table(out) if target == "parquet" else pacsv.read_csv(out)
    assert scored.column_names == [*table.column_names, "cluster", "segment", "distance"]
    model = custseg.load_model(REF, str(trained / "store"))
    np.testing.assert_array_equal(scored.column("cluster").to_numpy(), model.predict(table))
    names = model.meta["segment_names"]
    assert scored.column("segment").to_pylist() == [
        names[c] for c in scored.column("cluster").to_pylist()]
    assert not list(trained.glob("*.rejects.*"))  # no rejects, no reject file


def test_bad_rows_go_to_the_reject_file_or_stop_with_strict(trained: Path) -> None:
    lines = (trained / "customers.csv").read_text().splitlines()
    header, rows = lines[0], lines[1:11]
    cells = rows[3].split(",")
    cells[1] = "forty"  # Age
    rows[3] = ",".join(cells)
    cells = rows[7].split(",")
    cells[2] = "inf"  # Income
    rows[7] = ",".join(cells)
    (trained / "bad.csv").write_text("\n".join([header, *rows]) + "\n")
    result = cli(trained, "predict", "--model", REF, "--input", "bad.csv", "--output", "ok.csv")
    assert result.returncode == 0, result.stderr
    assert "Scored 8 of 10 rows" in result.stdout and "Rejected 2 rows" in result.stdout
    rejects = pacsv.read_csv(trained / "ok.rejects.csv")
    assert rejects.column("reason").to_pylist() == [
        "Age: 'forty' is not a finite number", "Income: 'inf' is not a finite number"]
    assert pacsv.read_csv(trained / "ok.csv").num_rows == 8
    strict = cli(trained, "predict", "--model", REF, "--input", "bad.csv", "--output",
                 "strict.csv", "--strict")
    assert strict.returncode == 3
    assert "bad.csv row 4: Age: 'forty' is not a finite number" in strict.stderr
    assert not (trained / "strict.csv").exists()  # nothing half-written


def test_missing_column_and_missing_input_are_clear(trained: Path) -> None:
    (trained / "narrow.csv").write_text("Age,Income\n30,50000\n")
    result = cli(trained, "predict", "--model", REF, "--input", "narrow.csv", "--output", "x.csv")
    assert result.returncode == 3 and "no column 'Purchases'" in result.stderr
    result = cli(trained, "predict", "--model", REF, "--input", "nope.csv", "--output", "x.csv")
    assert result.returncode == 3 and "input not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_s3_in_and_out(trained: Path, moto_server: str, make_bucket: object) -> None:
    bucket = make_bucket({"in/customers.csv": (trained / "customers.csv").read_bytes()})  # type: ignore[operator]
    config = trained / "s3.yaml"
    config.write_text(f"data_uri: customers.csv\nstore: store\ns3: {{endpoint_url: "
                      f"'{moto_server}'}}\nendpoint: {{autostart: false}}\n")
    result = cli(trained, "predict", "-c", config, "--model", REF, "--input",
                 f"s3://{bucket}/in/customers.csv", "--output", f"s3://{bucket}/out/scored.parquet")
    assert result.returncode == 0, result.stderr
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    body = s3.get_object(Bucket=bucket, Key="out/scored.parquet")["Body"].read()
    import io

    assert pq.read_table(io.BytesIO(body)).num_rows == 3000


def test_memory_stays_constant_as_the_file_grows(trained: Path) -> None:
    def peak_rss(rows: int) -> int:
        name = f"rows{rows}.csv"
        assert cli(trained, "sample", "--rows", str(rows), "-o", name).returncode == 0
        proc = subprocess.Popen([str(CUSTSEG), "predict", "--model", REF, "--input", name,
                                 "--output", f"scored{rows}.parquet"], cwd=trained,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        assert status == 0
        return int(usage.ru_maxrss)  # KiB

    small, large = peak_rss(100_000), peak_rss(1_500_000)
    assert large < small + 60 * 1024  # 15x the rows, not 15x the memory


def test_malformed_lines_are_rejected_and_gzip_output_is_compressed(trained: Path) -> None:
    lines = (trained / "customers.csv").read_text().splitlines()
    (trained / "ragged.csv").write_text("\n".join([*lines[:4], "99,40,5,Female",
                                                   *lines[4:8]]) + "\n")
    result = cli(trained, "predict", "--model", REF, "--input", "ragged.csv", "--output",
                 "ragged.csv.gz")
    assert result.returncode == 0, result.stderr
    assert "Scored 7 of 8 rows" in result.stdout
    import gzip

    assert gzip.decompress((trained / "ragged.csv.gz").read_bytes()).count(b"\n") == 8
    rejects = gzip.decompress((trained / "ragged.rejects.csv.gz").read_bytes()).decode()
    assert "expected 5 values, found 4: 99,40,5,Female" in rejects
    strict = cli(trained, "predict", "--model", REF, "--input", "ragged.csv", "--output",
                 "s.csv", "--strict")
    assert strict.returncode == 3 and "expected 5 values, found 4" in strict.stderr


# -- what must never be lost or overwritten --------------------------------------------------

def _rows(trained: Path, n: int) -> tuple[str, list[str]]:
    lines = (trained / "customers.csv").read_text().splitlines()
    return lines[0], lines[1:n + 1]


def test_an_unterminated_quote_is_rejected_with_the_lines_it_swallowed(trained: Path) -> None:
    header, rows = _rows(trained, 6)
    rows = [r.replace('"', "") for r in rows]  # no later quote to close it by chance
    cells = rows[0].split(",")
    cells[-1] = '"Male'  # the quote never closes: the next lines become part of this value
    (trained / "quote.csv").write_text("\n".join([header, ",".join(cells), *rows[1:]]) + "\n")
    result = cli(trained, "predict", "--model", REF, "--input", "quote.csv", "--output",
                 "quote-out.csv")
    assert result.returncode == 0, result.stderr
    assert "Rejected 1 rows" in result.stdout  # not "Scored 6 of 6": nothing silently lost
    rejects = pacsv.read_csv(trained / "quote-out.rejects.csv")
    (reason,) = rejects.column("reason").to_pylist()
    assert "spans 6 lines (an unterminated quote?" in reason
    strict = cli(trained, "predict", "--model", REF, "--input", "quote.csv", "--output",
                 "quote-strict.csv", "--strict")
    assert strict.returncode == 3 and "unterminated quote" in strict.stderr


@pytest.mark.parametrize(("output", "rejects", "message"), [
    ("same.csv", None, "is the input file"),
    ("other.csv", "other.csv", "--rejects other.csv is the output file"),
    ("other.csv", "same.csv", "--rejects same.csv is the input file"),
])
def test_no_file_is_written_over_the_input_or_the_output(
        trained: Path, output: str, rejects: str | None, message: str) -> None:
    header, rows = _rows(trained, 5)
    src = trained / "same.csv"
    original = "\n".join([header, *rows]) + "\n"
    src.write_text(original)
    args = ["predict", "--model", REF, "--input", "same.csv", "--output", output]
    if rejects:
        args += ["--rejects", rejects]
    result = cli(trained, *args)
    assert result.returncode == 3 and message in result.stderr
    assert "Traceback" not in result.stderr
    assert src.read_text() == original


def test_a_duplicate_header_column_is_named(trained: Path) -> None:
    header, rows = _rows(trained, 3)
    (trained / "dup.csv").write_text("\n".join([header + ",Age", *(r + ",1" for r in rows)]))
    result = cli(trained, "predict", "--model", REF, "--input", "dup.csv", "--output", "d.csv")
    assert result.returncode == 3
    assert "column 'Age' appears 2 times in the header" in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_utf8_and_overflowing_numbers_reject_their_rows_only(trained: Path) -> None:
    header, rows = _rows(trained, 6)
    bad_text = rows[1].rsplit(",", 1)[0].encode() + b",\xff\xfeMale"
    cells = rows[3].split(",")
    cells[1] = "1e309"  # Age: too large for a double
    data = b"\n".join([header.encode(), rows[0].encode(), bad_text, rows[2].encode(),
                       ",".join(cells).encode(), rows[4].encode(), rows[5].encode()]) + b"\n"
    (trained / "mixed.csv").write_bytes(data)
    result = cli(trained, "predict", "--model", REF, "--input", "mixed.csv", "--output",
                 "mixed-out.csv")
    assert result.returncode == 0, result.stderr
    assert "Exception ignored" not in result.stderr and "Traceback" not in result.stderr
    assert "Scored 4 of 6 rows" in result.stdout
    reasons = pacsv.read_csv(trained / "mixed-out.rejects.csv").column("reason").to_pylist()
    assert reasons[0].startswith("Gender: not valid UTF-8")
    assert reasons[1] == "Age: '1e309' is not a finite number"


def test_csv_to_parquet_keeps_the_numbers_numeric(trained: Path) -> None:
    result = cli(trained, "predict", "--model", REF, "--input", "customers.csv", "--output",
                 "typed.parquet")
    assert result.returncode == 0, result.stderr
    schema = pq.read_schema(trained / "typed.parquet")
    for name in ("Age", "Income", "Purchases"):
        assert str(schema.field(name).type) == "double", name
    assert str(schema.field("Gender").type) == "string"
