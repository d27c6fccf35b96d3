"""Reading customer data from real files and a real moto S3 server: single files, folders,
gzip, delimiters, the content hash, S3, and the errors a user can meet."""

from __future__ import annotations

import csv
import gzip
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from custseg.errors import DataError
from custseg.io.data import detect_delimiter, read_data

COLUMNS = ["CustomerID", "Age", "Income", "Purchases", "Gender"]
MakeCustomers = Callable[..., Path]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _lines(path: Path) -> list[str]:
    opener: Any = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", newline="") as f:
        return f.read().splitlines()


# -- local files -----------------------------------------------------------------------------

def test_reads_a_local_file(make_customers: MakeCustomers) -> None:
    path = make_customers("customers.csv", rows=300, seed=1)
    ds = read_data(str(path))
    assert ds.table.column_names == COLUMNS
    assert ds.num_rows == 300
    assert ds.files == [str(path)]
    assert ds.offsets == [0]
    assert ds.delimiter == ","
    assert ds.table.column("CustomerID").to_pylist() == list(range(1, 301))
    assert ds.sha256 == _sha(path)


def test_a_folder_of_csvs_is_read_as_one_table(make_customers: MakeCustomers) -> None:
    sizes = {"a.csv": 120, "b.csv": 80, "c.csv.gz": 50}
    paths = [make_customers(f"data/{name}", rows=n, seed=i)
             for i, (name, n) in enumerate(sizes.items())]
    (paths[0].parent / "README.md").write_text("not data\n")  # not a CSV: skipped
    ds = read_data(str(paths[0].parent))
    assert ds.files == [str(p) for p in paths]  # sorted by name
    assert ds.offsets == [0, 120, 200]
    assert ds.num_rows == 250
    expected = pa.concat_tables([read_data(str(p)).table for p in paths])
    assert ds.table.equals(expected)


@pytest.mark.parametrize("row", [0, 1, 119, 120, 150, 199, 200, 249])
def test_locate_names_the_file_row_and_line_of_a_row(make_customers: MakeCustomers,
                                                     row: int) -> None:
    sizes = {"a.csv": 120, "b.csv": 80, "c.csv.gz": 50}
    paths = [make_customers(f"data/{name}", rows=n, seed=i)
             for i, (name, n) in enumerate(sizes.items())]
    ds = read_data(str(paths[0].parent))
    where = ds.locate(row)
    file_index = max(i for i, off in enumerate(ds.offsets) if off <= row)
    local = row - ds.offsets[file_index]
    line = local + 2
    assert where == f"{paths[file_index]} row {local + 1} (line {line})"
    # the named line of the named file really holds that row
    text = _lines(paths[file_index])[line - 1]
    fields = next(csv.reader([text]))
    assert int(fields[0]) == ds.table.column("CustomerID")[row].as_py()


def test_locate_counts_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "gaps.csv"
    path.write_text("Age,Income\n30,1000\n\n40,2000\n")
    ds = read_data(str(path))
    assert ds.num_rows == 2
    assert ds.locate(1).endswith("(line 4)")


def test_csv_gz_reads_like_the_plain_file(make_customers: MakeCustomers) -> None:
    plain = make_customers("plain/customers.csv", rows=200, seed=3)
    packed = make_customers("packed/customers.csv.gz", rows=200, seed=3)
    assert packed.read_bytes()[:2] == b"\x1f\x8b"  # really gzip
    a, b = read_data(str(plain)), read_data(str(packed))
    assert b.table.equals(a.table)
    assert b.delimiter == ","
    assert b.sha256 == _sha(packed)  # the hash of the bytes as stored


# -- delimiters ------------------------------------------------------------------------------

@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"], ids=["comma", "semicolon", "tab",
                                                                    "pipe"])
def test_the_delimiter_is_detected(make_customers: MakeCustomers, delimiter: str) -> None:
    path = make_customers("customers.csv", rows=150, seed=2, delimiter=delimiter)
    ds = read_data(str(path))
    assert ds.delimiter == delimiter
    assert ds.table.column_names == COLUMNS
    assert ds.table.equals(read_data(str(make_customers("ref.csv", rows=150, seed=2))).table)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a;b;c\n1;2;3\n4;5;6\n", ";"),
        ("a\tb\n1\t2\n", "\t"),
        ("a|b\n1|2\n3|4\n", "|"),
        ('"name","city"\n"Smith; John","Paris"\n', ","),  # ';' inside quotes is not it
        ("a;b\r\n1,5;2\r\n3,5;4\r\n", ";"),  # decimal commas, Windows line ends
        ("single\n1\n2\n", ","),  # one column: the default
    ],
    ids=["semicolon", "tab", "pipe", "quoted", "decimal-comma-crlf", "one-column"],
)
def test_detect_delimiter(text: str, expected: str) -> None:
    assert detect_delimiter(text.encode()) == expected


@pytest.mark.parametrize("delimiter", [";", "\t", "|"], ids=["semicolon", "tab", "pipe"])
def test_an_explicit_delimiter_is_used(tmp_path: Path, delimiter: str) -> None:
    # values hold commas: detection alone could be fooled, the declared delimiter is not
    path = tmp_path / "data.csv"
    path.write_text(delimiter.join(["Name", "Age"]) + "\n"
                    + "\n".join(delimiter.join([f"Doe, J{i}", str(20 + i)]) for i in range(5))
                    + "\n")
    ds = read_data(str(path), delimiter=delimiter)
    assert ds.delimiter == delimiter
    assert ds.table.column_names == ["Name", "Age"]
    assert ds.table.column("Age").to_pylist() == [20, 21, 22, 23, 24]
    with pytest.raises(DataError, match="delimiter ','"):  # an explicit ',' is not overruled
        read_data(str(path), delimiter=",")


# -- content hash ----------------------------------------------------------------------------

def test_the_content_hash_is_stable_and_follows_the_content(
        make_customers: MakeCustomers) -> None:
    path = make_customers("customers.csv", rows=200, seed=0)
    first = read_data(str(path)).sha256
    assert read_data(str(path)).sha256 == first == _sha(path)
    copy = path.with_name("copy.csv")
    copy.write_bytes(path.read_bytes())
    assert read_data(str(copy)).sha256 == first  # content, not name or time
    lines = path.read_text().splitlines(keepends=True)
    fields = lines[5].split(",")
    fields[1] = str(int(fields[1] or 0) + 1)  # one Age changes by one year
    lines[5] = ",".join(fields)
    path.write_text("".join(lines))
    assert read_data(str(path)).sha256 not in (first, "")


def test_the_folder_hash_covers_every_file(make_customers: MakeCustomers) -> None:
    a = make_customers("data/a.csv", rows=100, seed=0)
    make_customers("data/b.csv", rows=100, seed=1)
    folder = str(a.parent)
    first = read_data(folder).sha256
    assert read_data(folder).sha256 == first
    assert first not in (_sha(a), read_data(str(a)).sha256)
    make_customers("data/b.csv", rows=100, seed=2)  # the second file changes
    assert read_data(folder).sha256 != first


# -- S3 (a real moto server) -----------------------------------------------------------------

def test_reads_a_single_s3_file(make_customers: MakeCustomers, make_bucket: Callable[..., str],
                                moto_server: str) -> None:
    local = make_customers("customers.csv", rows=250, seed=4)
    bucket = make_bucket({"data/customers.csv": local.read_bytes()})
    ds = read_data(f"s3://{bucket}/data/customers.csv", s3_endpoint_url=moto_server)
    assert ds.files == [f"s3://{bucket}/data/customers.csv"]
    assert ds.table.equals(read_data(str(local)).table)
    assert ds.sha256 == _sha(local)


def test_reads_an_s3_csv_gz(make_customers: MakeCustomers, make_bucket: Callable[..., str],
                            moto_server: str) -> None:
    local = make_customers("customers.csv.gz", rows=120, seed=5, delimiter=";")
    bucket = make_bucket({"customers.csv.gz": local.read_bytes()})
    ds = read_data(f"s3://{bucket}/customers.csv.gz", s3_endpoint_url=moto_server)
    assert ds.delimiter == ";"
    assert ds.table.equals(read_data(str(local)).table)


@pytest.mark.parametrize("prefix", ["data/", "data"], ids=["trailing-slash", "no-slash"])
def test_reads_an_s3_prefix_like_a_local_folder(
        make_customers: MakeCustomers, make_bucket: Callable[..., str], moto_server: str,
        prefix: str) -> None:
    paths = [make_customers(f"data/part-{i}.csv", rows=n, seed=i)
             for i, n in enumerate([90, 60, 30])]
    bucket = make_bucket({f"data/{p.name}": p.read_bytes() for p in paths}
                         | {"data/_SUCCESS": b"", "other/x.csv": paths[0].read_bytes()})
    ds = read_data(f"s3://{bucket}/{prefix}", s3_endpoint_url=moto_server)
    assert ds.files == [f"s3://{bucket}/data/{p.name}" for p in paths]
    assert ds.offsets == [0, 90, 150]
    local = read_data(str(paths[0].parent))
    assert ds.table.equals(local.table)
    assert ds.sha256 == local.sha256
    assert ds.locate(100) == f"s3://{bucket}/data/part-1.csv row 11 (line 12)"


def test_a_missing_s3_bucket_is_named(moto_server: str) -> None:
    with pytest.raises(DataError) as info:
        read_data("s3://custseg-no-such-bucket/data/", s3_endpoint_url=moto_server)
    assert "S3 bucket 'custseg-no-such-bucket' not found" in str(info.value)


@pytest.mark.parametrize("key", ["data/", "data/missing.csv"], ids=["prefix", "file"])
def test_missing_s3_data_is_named(make_bucket: Callable[..., str], moto_server: str,
                                  key: str) -> None:
    bucket = make_bucket({"elsewhere/x.csv": b"a,b\n1,2\n"})
    with pytest.raises(DataError) as info:
        read_data(f"s3://{bucket}/{key}", s3_endpoint_url=moto_server)
    assert f"s3://{bucket}/{key}" in str(info.value)


# -- errors ----------------------------------------------------------------------------------

def _file(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


@pytest.mark.parametrize(
    ("files", "target", "expected"),
    [
        ({}, "missing.csv", ["data not found", "missing.csv"]),
        ({"empty.csv": b""}, "empty.csv", ["empty.csv is empty"]),
        ({"blank.csv": b"\n\n  \n"}, "blank.csv", ["blank.csv is empty"]),
        ({"empty.csv.gz": gzip.compress(b"")}, "empty.csv.gz", ["empty.csv.gz is empty"]),
        ({"header.csv": b"Age,Income\n"}, "header.csv",
         ["header.csv has a header but no data rows"]),
        ({"header.csv": b"Age,Income"}, "header.csv",
         ["header.csv has a header but no data rows"]),
        ({"d/a.csv": b"Age,Income\n1,2\n", "d/b.csv": b"Age,Salary\n1,2\n"}, "d",
         ["b.csv has columns ['Age', 'Salary']", "a.csv has ['Age', 'Income']",
          "share one header"]),
        ({"d/a.csv": b"Age,Income\n1,2\n", "d/b.csv": b"Income,Age\n2,1\n"}, "d",
         ["b.csv has columns ['Income', 'Age']", "share one header"]),
        ({"d/a.csv": b"Age,Income\n1,2\n", "d/b.csv": b"Age,Income\n"}, "d",
         ["b.csv has a header but no data rows"]),
        ({"d/notes.md": b"hello\n"}, "d", ["no CSV files", "in folder"]),
        ({"bad.csv.gz": b"not gzip at all\n"}, "bad.csv.gz", ["bad.csv.gz", "gzip"]),
        ({"ragged.csv": b"Age,Income\n1,2\n3,4,5\n"}, "ragged.csv",
         ["cannot parse", "ragged.csv row 2 (line 3)", "expected 2 fields"]),
    ],
    ids=["missing-file", "empty", "blank-lines-only", "empty-gz", "header-only",
         "header-only-no-newline", "folder-other-columns", "folder-column-order",
         "folder-header-only-file", "folder-without-csv", "corrupt-gz", "ragged-row"],
)
def test_data_errors_name_the_problem(tmp_path: Path, files: dict[str, bytes], target: str,
                                      expected: list[str]) -> None:
    for name, content in files.items():
        _file(tmp_path, name, content)
    with pytest.raises(DataError) as info:
        read_data(str(tmp_path / target))
    for part in expected:
        assert part in str(info.value), str(info.value)
    assert info.value.exit_code == 3


def _ragged(rows: int, short: str, delimiter: str = ",", blank_lines: int = 0) -> bytes:
    """A header of 3 columns, `rows` good rows, the row `short`, then `rows` more;
    `blank_lines` empty lines after the header (the reader skips them)."""
    good = [delimiter.join([str(18 + i % 60), f"{50_000 + i}.5", "MF"[i % 2]])
            for i in range(rows)]
    lines = [delimiter.join(["Age", "Income", "Gender"]), *[""] * blank_lines, *good, short,
             *good]
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.parametrize(("name", "content", "where", "found"), [
    ("ragged.csv", _ragged(200, "33,1000"), "row 201 (line 202)", "found 2: '33,1000'"),
    ("wide.csv", _ragged(200, "33,1000,F,x"), "row 201 (line 202)",
     "found 4: '33,1000,F,x'"),
    ("gaps.csv", _ragged(50, "33,1000", blank_lines=3), "row 51 (line 55)",
     "found 2: '33,1000'"),
    ("first.csv", _ragged(0, "33"), "row 1 (line 2)", "found 1: '33'"),
    ("packed.csv.gz", gzip.compress(_ragged(200, "33,1000")), "row 201 (line 202)",
     "found 2: '33,1000'"),
], ids=["too-few", "too-many", "blank-lines", "first-row", "gzip"])
def test_a_ragged_row_is_named_by_file_row_and_line(tmp_path: Path, name: str, content: bytes,
                                                    where: str, found: str) -> None:
    path = _file(tmp_path, name, content)
    with pytest.raises(DataError) as info:
        read_data(str(path))
    assert str(info.value) == (f"cannot parse {path} {where} as CSV (delimiter ','): "
                               f"expected 3 fields like the header, {found}")
    assert info.value.exit_code == 3


def test_a_ragged_row_after_a_column_changes_type_is_still_named(tmp_path: Path) -> None:
    # the row number comes from parsing again, in blocks of 1 MiB: Age is an integer in
    # the first block and text after, and that must not stop the search
    good = [f"{i},{i}.5" for i in range(120_000)]
    text = "\n".join(["Age,Income", *good, "old,1.5", *good, "7", *good]) + "\n"
    path = _file(tmp_path, "late.csv", text.encode())
    with pytest.raises(DataError, match=r"late\.csv row 240002 \(line 240003\) as CSV .*found "
                                        r"1: '7'$"):
        read_data(str(path))


def test_a_ragged_row_on_s3_is_named(make_bucket: Callable[..., str], moto_server: str) -> None:
    bucket = make_bucket({"data/ragged.csv": _ragged(20, "33,1000")})
    uri = f"s3://{bucket}/data/ragged.csv"
    with pytest.raises(DataError) as info:
        read_data(uri, s3_endpoint_url=moto_server)
    assert str(info.value) == (f"cannot parse {uri} row 21 (line 22) as CSV (delimiter ','): "
                               "expected 3 fields like the header, found 2: '33,1000'")


def test_a_bad_value_in_a_later_file_of_a_folder_can_be_located(tmp_path: Path) -> None:
    # Income is int64 in a.csv and text in b.csv: the folder still reads, and the bad value
    # can be traced to its file and line (or the read fails naming them)
    _file(tmp_path, "d/a.csv", b"Age,Income\n30,1000\n40,2000\n")
    _file(tmp_path, "d/b.csv", b"Age,Income\n50,3000\n60,abc\n")
    try:
        ds = read_data(str(tmp_path / "d"))
    except DataError as exc:
        assert "b.csv" in str(exc) and "abc" in str(exc)
    else:
        assert ds.num_rows == 4
        assert ds.table.column("Age").to_pylist() == [30, 40, 50, 60]
        assert [str(v) for v in ds.table.column("Income").to_pylist()] == [
            "1000", "2000", "3000", "abc"]
        assert ds.locate(3) == f"{tmp_path / 'd' / 'b.csv'} row 2 (line 3)"


def test_take_rows_chunk_by_chunk_equals_arrows_take() -> None:
    """Sorted rows of a many-chunk table (nulls, strings, a dictionary column, rows in the
    first and last chunks and none in some) equal Arrow's own take."""
    import numpy as np
    import pyarrow as pa

    from custseg.core.columns import arrow_indices, take_rows

    rng = np.random.default_rng(2)
    pieces = []
    for size in (5, 0, 17, 1, 40, 3):
        pieces.append(pa.table({
            "x": pa.array(rng.normal(size=size).tolist(), pa.float64(),
                          mask=rng.random(size) < 0.2),
            "s": pa.array([str(v) for v in rng.integers(0, 5, size)], pa.string()),
            "d": pa.array([str(v) for v in rng.integers(0, 3, size)],
                          pa.string()).dictionary_encode(),
        }))
    table = pa.concat_tables(pieces)
    assert table.column("x").num_chunks == 6
    for index in (np.array([0, 4, 5, 21, 22, 65]), np.array([], dtype=np.int64),
                  np.arange(table.num_rows), np.array([22])):
        got = take_rows(table, index)
        want = table.take(arrow_indices(index))
        assert got.schema == table.schema
        assert got.to_pydict() == want.to_pydict()


def test_skipped_columns_are_not_parsed_but_stay_in_the_header(
        make_customers: MakeCustomers) -> None:
    path = make_customers("c.csv", rows=50)
    data = read_data(str(path), skip=lambda name: name == "CustomerID")
    assert "CustomerID" not in data.table.column_names
    assert data.meta["header"][0] == "CustomerID"
    assert data.table.column_names == data.meta["header"][1:]
