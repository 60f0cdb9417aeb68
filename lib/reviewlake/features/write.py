"""Writing one split of features as TFRecord files, with or without the spark-tfrecord jar.

* With the jar (``com.linkedin.spark.datasources.tfrecord.DefaultSource`` on the classpath;
  EMR and SageMaker get it with ``--packages``): ``df.write.format("tfrecord")
  .option("recordType", "Example")``, committed by Spark's file committer.
* Without it: a Python writer per partition (``mapInArrow``). Each task serialises its rows
  with :mod:`.tfrecord` into ``SPLIT/_temporary/<part>.attempt-<task attempt id>`` and then
  renames that file to ``SPLIT/part-NNNNN-<run>.tfrecord[.gz]``. The final name depends only
  on the partition and the run, so a retried or speculative attempt can only produce the same
  file again (a second committer finds it there and drops its own copy), and a killed
  attempt leaves only a temporary file. The driver removes ``_temporary`` and writes
  ``_SUCCESS`` when every task has committed. Local paths and S3 (``s3a://``, ``s3://``,
  through pyarrow's S3 filesystem with the session's s3a endpoint settings) are supported.

Either way the split directory lives in the run's staging area; the whole output is swapped
in by :mod:`reviewlake.commit` only after every split is written and counted.
"""
from __future__ import annotations

import logging
import math
from typing import Any, Iterator
from urllib.parse import urlparse

import numpy as np

from ..errors import UserError
from ..fs import HadoopFS, join
from . import tfrecord as T

log = logging.getLogger(__name__)

JAR_CLASS = "com.linkedin.spark.datasources.tfrecord.DefaultSource"
WRITERS = ("auto", "jar", "python")
TF_FEATURES = ("input_ids", "input_mask", "segment_ids", "label_ids")
NUM_LABELS = 5
STATS_DDL = "file string, records long, bytes long, labels array<long>"
TEMPORARY = "_temporary"
SUCCESS = "_SUCCESS"


# --------------------------------------------------------------------------- filesystems

_S3_KEYS = {  # Hadoop s3a option -> pyarrow S3FileSystem argument
    "fs.s3a.endpoint": "endpoint_override",
    "fs.s3a.endpoint.region": "region",
    "fs.s3a.access.key": "access_key",
    "fs.s3a.secret.key": "secret_key",
    "fs.s3a.session.token": "session_token",
}


def s3_options(spark) -> dict[str, Any]:
    """pyarrow S3FileSystem arguments from the session's s3a settings (endpoint, region and
    any credentials configured there; otherwise the AWS default chain: environment,
    instance or task role)."""
    hconf = spark.sparkContext._jsc.hadoopConfiguration()
    out: dict[str, Any] = {}
    for hkey, arg in _S3_KEYS.items():
        value = hconf.get(hkey)
        if value:
            out[arg] = value
    endpoint = out.get("endpoint_override")
    if endpoint:
        if endpoint.startswith(("http://", "https://")):
            out["scheme"], out["endpoint_override"] = endpoint.split("://", 1)
        elif (hconf.get("fs.s3a.connection.ssl.enabled") or "true").lower() == "false":
            out["scheme"] = "http"
        if (hconf.get("fs.s3a.path.style.access") or "false").lower() != "true":
            out["force_virtual_addressing"] = True  # pyarrow's default with an endpoint: paths
    return out


def s3_options_for(spark, path: str) -> dict[str, Any]:
    """:func:`s3_options`, plus the bucket's region when nothing names one (pyarrow would
    otherwise assume us-east-1)."""
    opts = s3_options(spark)
    if "region" not in opts and "endpoint_override" not in opts:
        try:
            from pyarrow import fs as pafs

            opts["region"] = pafs.resolve_s3_region(urlparse(path).netloc)
        except Exception as exc:  # no network to S3 here, or no such bucket: say so later
            log.warning("could not resolve the region of %s (%s)", path, exc)
    return opts


def python_writer_supports(path: str) -> bool:
    scheme = urlparse(path).scheme
    return scheme in ("", "file", "s3", "s3a", "s3n")


def arrow_filesystem(path: str, s3: dict[str, Any]):
    """(pyarrow filesystem, path inside it) for a local or S3 path."""
    from pyarrow import fs as pafs

    parsed = urlparse(path)
    if parsed.scheme in ("", "file"):
        return pafs.LocalFileSystem(), parsed.path if parsed.scheme else path
    if parsed.scheme in ("s3", "s3a", "s3n"):
        return pafs.S3FileSystem(**s3), f"{parsed.netloc}{parsed.path}"
    raise ValueError(f"the Python TFRecord writer cannot write to {parsed.scheme}://")


# --------------------------------------------------------------------------- python writer


def _matrix(batch, name: str, length: int) -> np.ndarray:
    """An array<int> column of fixed-length lists as an (n, length) int64 matrix."""
    col = batch.column(batch.schema.get_field_index(name))
    offsets = col.offsets.to_numpy(zero_copy_only=False)
    if col.null_count or not np.all(np.diff(offsets) == length):
        raise ValueError(f"{name}: every value must be a list of {length} integers")
    values = col.values.to_numpy(zero_copy_only=False)[offsets[0]:offsets[-1]]
    return values.astype(np.int64, copy=False).reshape(-1, length)


def partition_writer(split_dir: str, run_tag: str, compression: str, max_seq_length: int,
                     s3: dict[str, Any]):
    """The mapInArrow function that writes one partition as one TFRecord file."""
    suffix = T.suffix(compression)

    def write_partition(batches: Iterator) -> Iterator:
        import pyarrow as pa
        from pyarrow import fs as pafs
        from pyspark import TaskContext

        ctx = TaskContext.get()
        part = ctx.partitionId()
        name = f"part-{part:05d}-{run_tag}{suffix}"
        fs, root = arrow_filesystem(split_dir, s3)
        final = f"{root.rstrip('/')}/{name}"
        tmp = f"{root.rstrip('/')}/{TEMPORARY}/{name}.attempt-{ctx.taskAttemptId()}"
        writer = None
        labels = np.zeros(NUM_LABELS, dtype=np.int64)
        try:
            for batch in batches:
                if batch.num_rows == 0:
                    continue
                if writer is None:
                    fs.create_dir(f"{root.rstrip('/')}/{TEMPORARY}", recursive=True)
                    writer = T.TFRecordWriter(fs.open_output_stream(tmp), compression,
                                              owns_stream=True)
                label = batch.column(batch.schema.get_field_index("label_ids")) \
                    .to_numpy(zero_copy_only=False).astype(np.int64)
                records = T.encode_examples({
                    "input_ids": _matrix(batch, "input_ids", max_seq_length),
                    "input_mask": _matrix(batch, "input_mask", max_seq_length),
                    "segment_ids": _matrix(batch, "segment_ids", max_seq_length),
                    "label_ids": label,
                })
                writer.write_many(records)
                labels += np.bincount(label, minlength=NUM_LABELS)[:NUM_LABELS]
            if writer is None:
                return  # an empty partition writes no file
            writer.close()
        except BaseException:
            if writer is not None:
                try:
                    writer.close()
                    fs.delete_file(tmp)
                except Exception:  # the attempt failed anyway; the driver removes _temporary
                    pass
            raise
        size = fs.get_file_info(tmp).size
        if fs.get_file_info(final).type != pafs.FileType.NotFound:
            fs.delete_file(tmp)  # another attempt of this partition committed the same file
        else:
            fs.move(tmp, final)
        yield pa.RecordBatch.from_pydict(
            {"file": [name], "records": [writer.records], "bytes": [size],
             "labels": [labels.tolist()]},
            schema=pa.schema([("file", pa.string()), ("records", pa.int64()),
                              ("bytes", pa.int64()), ("labels", pa.list_(pa.int64()))]))

    return write_partition


def write_split_python(df, split_dir: str, run_tag: str, compression: str,
                       max_seq_length: int, s3: dict[str, Any]) -> list[dict[str, Any]]:
    """Write ``df`` (the four features) with the Python writer; one file per partition."""
    fn = partition_writer(split_dir, run_tag, compression, max_seq_length, s3)
    rows = df.select(*TF_FEATURES).mapInArrow(fn, STATS_DDL).collect()
    return [{"file": r["file"], "records": int(r["records"]), "bytes": int(r["bytes"]),
             "labels": [int(x) for x in r["labels"]]} for r in rows]


def write_split_jar(df, split_dir: str, compression: str) -> None:
    """Write ``df`` with spark-tfrecord's data source (files named by Spark's committer)."""
    from pyspark.sql import functions as F

    out = df.select(*[F.col(c) for c in TF_FEATURES[:3]],
                    F.col("label_ids").cast("long").alias("label_ids"))
    writer = out.write.format("tfrecord").option("recordType", "Example").mode("overwrite")
    if compression == "gzip":
        writer = writer.option("codec", "org.apache.hadoop.io.compress.GzipCodec")
    writer.save(split_dir)


def read_back_jar(spark, split_dir: str, files: list[dict[str, Any]]
                  ) -> tuple[int, dict[str, int], dict[str, int]]:
    """Records, records per label and records per file (by name) in the files spark-tfrecord
    wrote, read back through the same data source (every record parsed): the count check of
    the jar path."""
    from pyspark.sql import functions as F

    labels = {str(i): 0 for i in range(NUM_LABELS)}
    if not files:
        return 0, labels, {}
    paths = [join(split_dir, f["file"]) for f in files]
    rows = (spark.read.format("tfrecord").option("recordType", "Example").load(paths)
            .groupBy(F.input_file_name().alias("path"),
                     F.col("label_ids").cast("long").alias("label")).count().collect())
    per_file = {f["file"]: 0 for f in files}
    for r in rows:
        labels[str(r["label"])] = labels.get(str(r["label"]), 0) + int(r["count"])
        name = r["path"].rstrip("/").rsplit("/", 1)[-1]
        per_file[name] = per_file.get(name, 0) + int(r["count"])
    return sum(labels.values()), labels, per_file


def choose_writer(spark, requested: str, output: str) -> str:
    """'jar' or 'python' for this session and output, or a one-line UserError."""
    from ..jars import TFRECORD
    from ..session import has_class

    if requested not in WRITERS:
        raise UserError(f"--writer must be one of {', '.join(WRITERS)}, got {requested!r}")
    jar = has_class(spark, JAR_CLASS)
    if requested == "jar" and not jar:
        raise UserError("the spark-tfrecord jar is not on the classpath (class "
                        f"{JAR_CLASS}); fetch it with jars/fetch.sh tfrecord, pass --packages "
                        f"{TFRECORD}, or use --writer python")
    if requested == "jar" or (requested == "auto" and jar):
        return "jar"
    if not python_writer_supports(output):
        raise UserError(f"without the spark-tfrecord jar TFRecords can be written to local "
                        f"paths and S3 only, not {output}; add the jar (jars/fetch.sh or "
                        f"--packages) or choose another --output")
    return "python"


def files_for(count: int, records_per_file: int, min_files: int) -> int:
    """How many files a split of ``count`` records is written as."""
    if count <= 0:
        return 1
    return max(1, min(count, max(min_files, math.ceil(count / max(1, records_per_file)))))


def finish_split(fs: HadoopFS, split_dir: str) -> None:
    """Remove the writers' temporary files and mark the split complete."""
    fs.delete(join(split_dir, TEMPORARY))
    fs.mkdirs(split_dir)
    fs.write_text(join(split_dir, SUCCESS), "")


def list_split_files(fs: HadoopFS, split_dir: str) -> list[dict[str, Any]]:
    """The TFRecord files of a split directory (name and size), sorted by name."""
    out = []
    for info in fs.list_dir(split_dir):
        name = info.path.rstrip("/").rsplit("/", 1)[-1]
        if name.startswith(("_", ".")) or fs.is_dir(info.path):
            continue
        out.append({"file": name, "bytes": info.size})
    return sorted(out, key=lambda f: f["file"])
