"""Reading the training data on Spark, and the driver's seeded sample of it.

CSV (local files, folders, `.csv.gz`, `s3://`) is read as text, the header and delimiter
checked as the local reader does; the cells Arrow's CSV reader takes as missing (`NA`,
`NULL`, empty...) are missing here too. Parquet is read typed. `s3://` is read by Spark
as `s3a://` when Hadoop's S3A connector is on its classpath, else through custseg's
Python data source (`spark_s3`). The driver holds at most `SAMPLE_ROWS` rows, whatever
the data's size: a seeded sample that decides the schema (CSV text typed by Arrow's own
CSV reader, so a column gets the type the local engine would give it) and what the local
engine also decides on a sample (skew transforms, clip bounds, quantiles, silhouette,
stability).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from custseg.config import Config
from custseg.errors import ConfigError, DataError
from custseg.io.data import (
    decompressed_head,
    detect_delimiter,
    header_names,
    is_parquet,
    list_sources,
    open_source,
)

__all__ = ["NULL_MARKERS", "SAMPLE_ROWS", "SparkData", "column", "read_spark_data",
           "s3a_connector", "spark_path"]

SAMPLE_ROWS = 200_000  # rows brought to the driver, at most (the local engine's sample)
NULL_MARKERS = tuple(pacsv.ConvertOptions().null_values)  # Arrow's missing-value cells


@dataclass
class SparkData:
    """The data as a Spark DataFrame (`text`: every column is text, as read from CSV),
    its size, and a typed seeded sample of at most SAMPLE_ROWS rows on the driver.
    `reader`: what read the files (`spark`, or `spark_s3.NAME` for S3 without S3A);
    `s3a_connector`: the hadoop-aws version that read S3 through Spark."""

    frame: Any
    files: list[str]
    rows: int
    text: bool
    delimiter: str | None
    header: list[str]
    sample: pa.Table
    reader: str = "spark"
    s3a_connector: str | None = None

    @property
    def sampled(self) -> bool:
        return bool(self.sample.num_rows < self.rows)


def column(name: str) -> Any:
    """A column by name, whatever characters the name holds (dots, spaces)."""
    from pyspark.sql import functions as F

    return F.col("`" + name.replace("`", "``") + "`")


def spark_path(uri: str) -> str:
    """Spark reads S3 through Hadoop's S3A connector."""
    return "s3a://" + uri.removeprefix("s3://") if uri.startswith("s3://") else uri


# hadoop-aws 3.3 and older (AWS SDK v1) read these with getInt/getLong, so Hadoop 3.4+'s
# defaults ("30s", "24h") stop them, as does its default chain of SDK v2 credential
# providers. The same values in the units those versions read; the chain is theirs.
_SDK_V1_SETTINGS = {
    "fs.s3a.connection.establish.timeout": "30000",  # ms
    "fs.s3a.connection.timeout": "200000",  # ms
    "fs.s3a.threads.keepalivetime": "60",  # s
    "fs.s3a.multipart.purge.age": "86400",  # s
    "fs.s3a.aws.credentials.provider": ",".join([
        "org.apache.hadoop.fs.s3a.TemporaryAWSCredentialsProvider",
        "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
        "com.amazonaws.auth.EnvironmentVariableCredentialsProvider",
        "org.apache.hadoop.fs.s3a.auth.IAMInstanceCredentialsProvider"]),
}
_POM = "/META-INF/maven/org.apache.hadoop/hadoop-aws/pom.properties"


def _release(version: str) -> tuple[int, ...]:
    """(3, 3, 1) from '3.3.1' (or '3.3.1-amzn-0'); () when it does not start so."""
    parts = []
    for part in version.split("-")[0].split("."):
        if not part.isdigit():
            break
        parts.append(int(part))
    return tuple(parts)


def s3a_connector(session: Any) -> str | None:
    """The version of Hadoop's S3A connector (the hadoop-aws jar) on Spark's classpath:
    'unknown' when its jar does not say, None when it is not there. Looked up as Hadoop
    loads it, so jars given in `spark.jars` or `spark.jars.packages` count."""
    hadoop_conf = session.sparkContext._jsc.hadoopConfiguration()
    try:
        connector = hadoop_conf.getClassByName("org.apache.hadoop.fs.s3a.S3AFileSystem")
    except Exception:  # py4j raises its own error for a missing class
        return None
    stream = connector.getResourceAsStream(_POM)
    if stream is None:
        return "unknown"
    try:
        properties = session.sparkContext._jvm.java.util.Properties()
        properties.load(stream)
    finally:
        stream.close()
    return str(properties.getProperty("version") or "unknown")


def _configure_s3(session: Any, cfg: Config, connector: str) -> None:
    """fs.s3a.* from `s3.endpoint_url`, and what an SDK v1 connector (hadoop-aws < 3.4)
    needs on Hadoop 3.4+, unless spark.conf sets them (`spark.hadoop.fs.s3a.*`)."""
    hadoop_conf = session.sparkContext._jsc.hadoopConfiguration()
    given = set(cfg.spark.conf)
    settings = {"fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
                "fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem"}
    if cfg.s3.endpoint_url:
        settings |= {"fs.s3a.endpoint": cfg.s3.endpoint_url,
                     "fs.s3a.path.style.access": "true",
                     "fs.s3a.connection.ssl.enabled":
                         str(cfg.s3.endpoint_url.startswith("https")).lower()}
    hadoop = _release(str(session.sparkContext._jvm.org.apache.hadoop.util.VersionInfo
                          .getVersion()))
    if () < _release(connector) < (3, 4) <= hadoop:
        settings |= _SDK_V1_SETTINGS
    for key, value in settings.items():
        if "spark.hadoop." + key not in given:
            hadoop_conf.set(key, value)


def _through_data_source(session: Any, files: list[str], cfg: Config,
                         csv: tuple[str, list[str]] | None) -> Any:
    """The files as a DataFrame read by `spark_s3` (CSV as text: `csv` is its delimiter
    and header; else Parquet, typed as its first file's schema)."""
    from pyspark.sql.types import StringType, StructField, StructType

    from custseg.engines import spark_s3

    options = {"files": json.dumps(files), "endpoint_url": cfg.s3.endpoint_url or ""}
    if csv is None:
        import pyarrow.parquet as pq
        from pyspark.sql.pandas.types import from_arrow_schema

        with open_source(files[0], s3_endpoint_url=cfg.s3.endpoint_url) as f:
            schema = from_arrow_schema(pq.read_schema(f))
        options |= {"format": "parquet"}
    else:
        delimiter, header = csv
        schema = StructType([StructField(name, StringType()) for name in header])
        options |= {"format": "csv", "delimiter": delimiter, "header": json.dumps(header),
                    "split_bytes": str(spark_s3.SPLIT_BYTES)}
    session.dataSource.register(spark_s3.S3Source)
    return (session.read.format(spark_s3.NAME).options(**options)
            .option("schema", schema.json()).load())


def _check_headers(files: list[str], cfg: Config) -> tuple[str, list[str]]:
    """The delimiter and header, checked in every file as the local reader does."""
    heads = []
    for uri in files:
        with open_source(uri, s3_endpoint_url=cfg.s3.endpoint_url) as f:
            head = decompressed_head(f.read(65536), uri)
        if not head.strip():
            raise DataError(f"{uri} is empty (expected a header line and data rows)")
        heads.append(head)
    delimiter = cfg.csv.delimiter
    if delimiter == "auto":
        delimiter = detect_delimiter(heads[0])
    headers = [header_names(head, delimiter) for head in heads]
    first = headers[0]
    if first is None:
        raise DataError(f"{files[0]}: the header line is longer than 64 KiB")
    for name in dict.fromkeys(first):
        if first.count(name) > 1:
            raise DataError(f"{files[0]}: column {name!r} appears {first.count(name)} times in "
                            "the header; every column needs a unique name")
    for uri, header in zip(files, headers, strict=True):
        if header is not None and header != first:
            raise DataError(f"{uri} has columns {header}, but {files[0]} has {first}: every "
                            "file in a folder must share one header")
    return delimiter, first


def _typed(text: pa.Table) -> pa.Table:
    """Text cells typed as Arrow's CSV reader types them (what the local engine reads)."""
    if text.num_rows == 0:
        return text
    buffer = io.BytesIO()
    pacsv.write_csv(text, buffer)
    return pacsv.read_csv(io.BytesIO(buffer.getvalue()),
                          convert_options=pacsv.ConvertOptions(strings_can_be_null=True))


def _wanted(header: list[str], cfg: Config) -> list[str]:
    f = cfg.features
    if f.numeric is not None or f.categorical is not None:
        keep = {*(f.numeric or []), *(f.categorical or []), *f.dates, *f.profile_only}
        return [c for c in header if c in keep and c not in f.ignore]
    return [c for c in header if c not in f.ignore]


def read_spark_data(session: Any, cfg: Config) -> SparkData:
    """The data at `cfg.data_location` as a DataFrame, with its seeded driver sample."""
    from pyspark.sql import functions as F

    location = cfg.data_location
    reader, connector = "spark", None
    if location.startswith("s3://"):
        if cfg.spark.remote is None:
            connector = s3a_connector(session)
            if connector is None:  # no S3A connector: custseg's data source
                from custseg.engines import spark_s3

                reader = spark_s3.NAME
            else:
                _configure_s3(session, cfg, connector)
        elif cfg.s3.endpoint_url:  # the Spark Connect server reads S3 with its own settings
            raise ConfigError(
                "s3.endpoint_url cannot apply with spark.remote: the Spark Connect server "
                "reads S3 with its own fs.s3a.* settings; configure them there")
    files = list_sources(location, s3_endpoint_url=cfg.s3.endpoint_url)
    if all(is_parquet(f) for f in files):
        if reader == "spark":
            frame = session.read.parquet(*[spark_path(f) for f in files])
        else:
            frame = _through_data_source(session, files, cfg, None)
        header, delimiter, text = list(frame.columns), None, False
    elif reader != "spark":
        delimiter, header = _check_headers(files, cfg)
        frame = _through_data_source(session, files, cfg, (delimiter, header))
        text = True
    else:
        delimiter, header = _check_headers(files, cfg)
        frame = (session.read.option("header", True).option("sep", delimiter)
                 .option("quote", '"').option("escape", '"').option("mode", "FAILFAST")
                 .option("inferSchema", False).option("enforceSchema", False)
                 .csv([spark_path(f) for f in files]))
        text = True
    keep = _wanted(header, cfg)
    if text:  # the cells Arrow reads as missing
        frame = frame.select([F.when(column(c).isin(*NULL_MARKERS), None)
                              .otherwise(column(c)).alias(c) for c in keep])
    else:
        frame = frame.select([column(c) for c in keep])
    from pyspark import StorageLevel

    frame = frame.persist(StorageLevel.MEMORY_AND_DISK)  # read once; the caller unpersists
    rows = int(frame.count())
    if rows == 0:
        raise DataError(f"{files[0]} has a header but no data rows")
    if rows <= SAMPLE_ROWS:  # every row (one file: in file order, as the local engine reads)
        sample = frame.toArrow()
    else:
        # Bernoulli: ~99% of SAMPLE_ROWS (sd ~450 rows), cut at SAMPLE_ROWS in any case
        sample = frame.sample(withReplacement=False, fraction=0.99 * SAMPLE_ROWS / rows,
                              seed=cfg.random_state).toArrow().slice(0, SAMPLE_ROWS)
    if text:
        sample = _typed(sample)
    return SparkData(frame=frame, files=files, rows=rows, text=text, delimiter=delimiter,
                     header=header, sample=sample, reader=reader, s3a_connector=connector)
