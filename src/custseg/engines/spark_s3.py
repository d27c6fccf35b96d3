"""Reading `s3://` on Spark without Hadoop's S3A connector: a Python data source.

pyspark's wheel carries no S3A connector: the hadoop-aws jar and the AWS SDK it needs
come from Maven Central, which many machines cannot reach (and a `pip install pyspark`
laptop never has). With the connector on Spark's classpath, Spark reads `s3a://` itself.
Without it, custseg reads S3 through this data source (Spark's Python Data Source API,
pyspark 4): each partition is a piece of one file, read on an executor through s3fs and
parsed by pyarrow (CSV as text, the same cells Spark's CSV reader gives; Parquet one row
group at a time), and handed to Spark as Arrow record batches. The executors need
custseg installed (they unpickle the reader) and S3 access (the usual AWS credential
chain), as with S3A; nothing secret goes through the data source's options.

CSV files are cut into pieces of about `SPLIT_BYTES` at line ends: a piece holds the
lines that start in its byte range, the first piece of a file skips the header. (A
quoted field holding a line break is not supported, as with Spark's own CSV reader
without `multiLine`.) A compressed file is one piece.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator
from typing import Any

from pyspark.sql.datasource import DataSource, DataSourceReader, InputPartition
from pyspark.sql.types import StructType

__all__ = ["NAME", "SPLIT_BYTES", "S3Source"]

NAME = "custseg_s3"
SPLIT_BYTES = 64 << 20  # a CSV piece: about what Spark's own reader takes per partition
_READ = 1 << 16  # bytes read at a time past a piece's end, to finish its last line


class S3Source(DataSource):
    """Options (all text, set by `spark_data`): `files` (JSON list of s3:// URIs),
    `format` (csv or parquet), `schema` (the DataFrame's StructType as JSON),
    `endpoint_url` (empty: AWS), and for CSV `header` (JSON list), `delimiter` and
    `split_bytes`."""

    @classmethod
    def name(cls) -> str:
        return NAME

    def schema(self) -> StructType:
        return StructType.fromJson(json.loads(self.options["schema"]))

    def reader(self, schema: StructType) -> DataSourceReader:
        return _Reader(dict(self.options))


def _filesystem(endpoint_url: str) -> Any:
    from custseg.io.sources import s3_filesystem

    return s3_filesystem(endpoint_url or None)


class _Reader(DataSourceReader):
    def __init__(self, options: dict[str, str]) -> None:
        self.files: list[str] = json.loads(options["files"])
        self.format = options["format"]
        self.endpoint_url = options.get("endpoint_url", "")
        self.header: list[str] = json.loads(options.get("header", "[]"))
        self.delimiter = options.get("delimiter", ",")
        self.split_bytes = int(options.get("split_bytes", SPLIT_BYTES))

    def partitions(self) -> list[InputPartition]:
        fs = _filesystem(self.endpoint_url)
        pieces: list[InputPartition] = []
        for uri in self.files:
            path = uri.removeprefix("s3://")
            if self.format == "parquet":
                import pyarrow.parquet as pq

                with fs.open(path, "rb") as f:
                    groups = pq.ParquetFile(f).metadata.num_row_groups
                pieces += [InputPartition((uri, group, 0)) for group in range(groups)]
            elif uri.lower().endswith(".gz"):
                pieces.append(InputPartition((uri, 0, -1)))  # not splittable
            else:
                size = int(fs.size(path))
                pieces += [InputPartition((uri, start, min(start + self.split_bytes, size)))
                           for start in range(0, max(size, 1), self.split_bytes)]
        return pieces

    def read(self, partition: InputPartition) -> Iterator[Any]:
        uri, start, end = partition.value
        fs = _filesystem(self.endpoint_url)
        with fs.open(uri.removeprefix("s3://"), "rb") as f:
            if self.format == "parquet":
                import pyarrow.parquet as pq

                yield from pq.ParquetFile(f).read_row_group(start).to_batches()
                return
            data = gzip.decompress(f.read()) if end < 0 else piece_lines(f, start, end)
        if data:
            yield from self._parse(data, header_line=start == 0).to_batches()

    def _parse(self, data: bytes, *, header_line: bool) -> Any:
        import pyarrow as pa
        import pyarrow.csv as pacsv

        return pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(column_names=self.header,
                                           skip_rows=1 if header_line else 0),
            parse_options=pacsv.ParseOptions(delimiter=self.delimiter, quote_char='"',
                                             double_quote=True),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in self.header}, null_values=[],
                strings_can_be_null=False, quoted_strings_can_be_null=False))


def piece_lines(f: Any, start: int, end: int) -> bytes:
    """The lines of an open file that start in bytes [start, end), whole (the last one
    read past `end` to its line break)."""
    if start > 0:
        f.seek(start - 1)  # a line starts at `start` when the byte before it ends one
        data = f.read(end - start + 1)
        first = data.find(b"\n")
        data = b"" if first < 0 else data[first + 1:]
    else:
        data = f.read(end)
    if not data or data.endswith(b"\n"):
        return bytes(data)
    rest = [data]
    while True:
        more = f.read(_READ)
        if not more:
            break
        cut = more.find(b"\n")
        if cut >= 0:
            rest.append(more[: cut + 1])
            break
        rest.append(more)
    return b"".join(rest)
