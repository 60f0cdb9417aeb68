"""The one SparkSession builder: master, jars, Arrow, shuffle sizing, S3.

Two ways a job gets here:

* ``reviewlake <stage>`` (console script): this process starts the JVM, so the builder sets
  the master, driver memory and the jars found in ``jars/``.
* ``spark-submit jobs/<stage>.py`` (``./spark-submit.sh``, EMR steps, SageMaker processing):
  spark-submit already started the JVM with the cluster's master and jars; the builder must not
  override them and only sets runtime options.
"""
from __future__ import annotations

import contextlib
import glob
import logging
import os
import sys
from pathlib import Path
from typing import Any, Iterator, Mapping

from .config import Config

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent.parent


def under_spark_submit() -> bool:
    """True when spark-submit launched this Python process (it owns the JVM and its conf)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def log4j_config() -> str | None:
    """conf/log4j2.properties of a checkout (or the package copy), if there is one."""
    for candidate in (REPO_ROOT / "conf" / "log4j2.properties",
                      Path(__file__).resolve().parent / "conf" / "log4j2.properties"):
        if candidate.is_file():
            return str(candidate)
    return None


def jars_dir() -> Path:
    return Path(os.environ.get("REVIEWLAKE_JARS_DIR", REPO_ROOT / "jars"))


def local_jars() -> list[str]:
    return sorted(glob.glob(str(jars_dir() / "*.jar")))


def default_shuffle_partitions(master: str | None) -> int:
    """Local runs: a few tasks per core, not Spark's 200 (tiny tasks dominate small data)."""
    cores = os.cpu_count() or 2
    if master and master.startswith("local"):
        inside = master[master.find("[") + 1: master.find("]")] if "[" in master else "1"
        if inside.isdigit():
            cores = int(inside)
    return max(4, 2 * cores)


def s3a_options(s3: Mapping[str, Any]) -> dict[str, str]:
    """Hadoop options for s3a:// (and s3:// mapped to s3a where there is no EMRFS)."""
    if not s3:
        return {}
    out: dict[str, str] = {}
    if s3.get("endpoint"):
        out["spark.hadoop.fs.s3a.endpoint"] = str(s3["endpoint"])
        if str(s3["endpoint"]).startswith("http://"):
            out["spark.hadoop.fs.s3a.connection.ssl.enabled"] = "false"
    if s3.get("path_style_access") is not None:
        out["spark.hadoop.fs.s3a.path.style.access"] = str(bool(s3["path_style_access"])).lower()
    if s3.get("region"):
        out["spark.hadoop.fs.s3a.endpoint.region"] = str(s3["region"])
    if s3.get("credentials_provider"):
        out["spark.hadoop.fs.s3a.aws.credentials.provider"] = str(s3["credentials_provider"])
    if s3.get("map_s3_scheme"):
        # Plain s3:// paths on machines without EMRFS (laptops, SageMaker, tests).
        out["spark.hadoop.fs.s3.impl"] = "org.apache.hadoop.fs.s3a.S3AFileSystem"
    # Credentials come from the environment or the instance role, never from a file we write.
    return out


def spark_options(cfg: Config, app_name: str) -> dict[str, str]:
    """Every Spark option the profile asks for, as strings (tests inspect this)."""
    spark_cfg = cfg.section("spark")
    master = spark_cfg.get("master") or "local[*]"
    shuffle = spark_cfg.get("shuffle_partitions", "auto")
    if shuffle in (None, "auto"):
        shuffle = default_shuffle_partitions(master)
    opts: dict[str, str] = {
        "spark.app.name": f"{spark_cfg.get('app_name', 'reviewlake')}-{app_name}",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.execution.arrow.maxRecordsPerBatch": str(
            spark_cfg.get("arrow_batch_size", 10000)),
        "spark.sql.shuffle.partitions": str(shuffle),
        "spark.sql.parquet.compression.codec": "snappy",
        "spark.sql.session.timeZone": "UTC",
        # Unparseable dates are invalid (null), not an error about Spark 2's parser.
        "spark.sql.legacy.timeParserPolicy": "CORRECTED",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.debug.maxToStringFields": "200",
    }
    opts.update(s3a_options(spark_cfg.get("s3") or {}))
    for key, value in (spark_cfg.get("conf") or {}).items():
        opts[str(key)] = str(value)
    return opts


def cluster_py_files(conf: Mapping[str, Any]) -> str | None:
    """What ``reviewlake <stage> --master <cluster>`` ships to the executors, as
    ``./spark-submit.sh`` does: the packaged library (``build/reviewlake-<version>.zip``,
    rebuilt when a source is newer) when running from a source checkout, unless the profile's
    ``spark.conf`` names ``spark.submit.pyFiles`` itself. Without it the executors (and the
    Horovod ranks of ``--launcher spark``) would import whatever reviewlake their nodes have
    installed, or none. An installed package ships nothing: the nodes are expected to have it
    (the EMR bootstrap installs the wheel)."""
    if "spark.submit.pyFiles" in conf or not (REPO_ROOT / "setup.py").is_file():
        return None
    from .launch.bundle import build_zip

    return str(build_zip(REPO_ROOT / "build"))


def get_spark(cfg: Config | None = None, app_name: str = "job"):
    """The session for a job, built once per process."""
    from pyspark.sql import SparkSession

    cfg = cfg or Config.load()
    opts = spark_options(cfg, app_name)
    active = SparkSession.getActiveSession()
    if active is not None:
        _apply_runtime(active, opts)
        return active

    builder = SparkSession.builder
    if not under_spark_submit():
        check_java()
        spark_cfg = cfg.section("spark")
        master = spark_cfg.get("master") or "local[*]"
        builder = builder.master(master)
        if master.startswith("local"):
            # Python workers must run this interpreter (the venv's), not python3 from PATH.
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
            os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
            # A laptop run talks to itself: bind to loopback (and say nothing about it).
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        else:
            py_files = cluster_py_files(spark_cfg.get("conf") or {})
            if py_files:
                builder = builder.config("spark.submit.pyFiles", py_files)
        log4j = log4j_config()
        if log4j:
            builder = builder.config("spark.driver.extraJavaOptions",
                                     f"-Dlog4j2.configurationFile={log4j}")
        if spark_cfg.get("driver_memory"):
            builder = builder.config("spark.driver.memory", str(spark_cfg["driver_memory"]))
        jars = local_jars() + [str(j) for j in (spark_cfg.get("jars") or [])]
        if jars:
            builder = builder.config("spark.jars", ",".join(jars))
        packages = spark_cfg.get("packages") or []
        if packages:
            builder = builder.config("spark.jars.packages", ",".join(packages))
    for key, value in opts.items():
        if under_spark_submit() and key == "spark.app.name":
            continue
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(str(cfg.get("spark.log_level", "WARN")))
    if cfg.get("spark.check_executors") and not spark.sparkContext.master.startswith("local"):
        from .executors import check_executors

        check_executors(spark)  # which reviewlake the executors import, before the job
    return spark


def check_java() -> None:
    """pyspark needs a JVM; without one it fails with an obscure gateway error."""
    import shutil

    home = os.environ.get("JAVA_HOME")
    if home and os.path.exists(os.path.join(home, "bin", "java")):
        return
    if shutil.which("java") is None:
        from .errors import UserError

        raise UserError("Java 17 not found: install it (Debian/Ubuntu: apt-get install "
                        "openjdk-17-jre-headless; macOS: brew install openjdk@17) or set JAVA_HOME")


_STATIC_PREFIXES = ("spark.hadoop.", "spark.app.name", "spark.driver.", "spark.executor.",
                    "spark.jars", "spark.ui.")


def _apply_runtime(spark, opts: Mapping[str, str]) -> None:
    """Set what can change on a running session; Hadoop options go to its configuration."""
    hconf = spark.sparkContext._jsc.hadoopConfiguration()
    for key, value in opts.items():
        if key.startswith("spark.hadoop."):
            hconf.set(key[len("spark.hadoop."):], value)
        elif not key.startswith(_STATIC_PREFIXES):
            try:
                spark.conf.set(key, value)
            except Exception:  # static SQL conf on a running session: keep what is there
                log.debug("cannot change %s on a running session", key)


def has_class(spark, class_name: str) -> bool:
    """Whether a JVM class (e.g. Deequ's) is on the driver's classpath, without touching it."""
    jvm = spark.sparkContext._jvm
    try:
        loader = jvm.java.lang.Thread.currentThread().getContextClassLoader()
        jvm.java.lang.Class.forName(class_name, False, loader)
        return True
    except Exception:
        return False


@contextlib.contextmanager
def spark_conf(spark, values: dict[str, str | None]) -> Iterator[None]:
    """Set SQL options for the duration of a block and restore them afterwards."""
    old = {k: spark.conf.get(k, None) for k in values}
    for key, value in values.items():
        if value is not None:
            spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


# -- the lake's Iceberg catalog --------------------------------------------------------------
# Spark reads ``spark.sql.catalog.<name>*`` when a catalog is first used, and these options can
# be set on a live session: each lake gets its catalog at run time (tests share one session
# across lakes in different directories). Catalog instances are cached by name for the life of
# the session, so the embedded catalog's name is derived from the lake it lives in.

ICEBERG_CATALOG_CLASS = "org.apache.iceberg.spark.SparkCatalog"
SQLITE_DRIVER_CLASS = "org.sqlite.JDBC"
CATALOG_TYPES = ("embedded", "hadoop", "glue", "hive")
EMBEDDED_CATALOG_FILE = "_catalog.db"


def catalog_type(catalog: Mapping[str, Any] | None) -> str:
    """The profile's ``catalog.type`` (``embedded`` when unset)."""
    return dict(catalog or {}).get("type") or "embedded"


def _local_dir(uri: str) -> str | None:
    """The local directory of a file:/ URI or plain path; None for other schemes."""
    if uri.startswith("file:"):
        rest = uri[len("file:"):]
        while rest.startswith("//"):
            rest = rest[1:]
        return rest
    return None if "://" in uri else os.path.abspath(uri)


def iceberg_catalog(catalog: Mapping[str, Any] | None, lake: str) -> tuple[str, dict[str, str]]:
    """(catalog name, spark.sql.catalog.* options) of the profile's ``catalog`` section for
    the lake at ``lake`` (a qualified URI). ``embedded``: Iceberg's JDBC catalog on a SQLite
    file LAKE/_catalog.db, tables under LAKE; ``hadoop``: the Hadoop catalog (local/HDFS
    warehouses only: it commits by rename); ``glue``: the AWS Glue Data Catalog with S3FileIO;
    ``hive``: a Hive metastore (``catalog.uri``)."""
    import hashlib

    from .errors import UserError

    catalog = dict(catalog or {})
    ctype = catalog_type(catalog)
    if ctype not in CATALOG_TYPES:
        raise UserError(f"catalog.type must be one of {', '.join(CATALOG_TYPES)}, got {ctype!r}")
    warehouse = str(catalog.get("warehouse") or lake).rstrip("/")
    name = catalog.get("name")
    if not name:
        if ctype == "embedded":
            # one name per lake: Spark caches a catalog by name with the options it first saw
            key = _local_dir(lake) or lake
            name = "lake_" + hashlib.sha1(key.rstrip("/").encode()).hexdigest()[:12]
        else:
            name = "lake"
    name = str(name)
    p = f"spark.sql.catalog.{name}"
    # cache-enabled false: every read sees the catalog's current snapshot, also one another
    # process committed since this session last looked
    opts = {p: ICEBERG_CATALOG_CLASS, f"{p}.cache-enabled": "false"}
    if ctype == "embedded":
        local = _local_dir(lake)
        if local is None:
            raise UserError(f"the embedded Iceberg catalog needs a local lake directory, got "
                            f"{lake}: set catalog.type glue (or hive) for a lake on {lake.split(':')[0]}")
        opts.update({f"{p}.type": "jdbc",
                     f"{p}.uri": f"jdbc:sqlite:{os.path.join(local, EMBEDDED_CATALOG_FILE)}",
                     f"{p}.warehouse": warehouse})
    elif ctype == "hadoop":
        opts.update({f"{p}.type": "hadoop", f"{p}.warehouse": warehouse})
    elif ctype == "glue":
        if warehouse.startswith("s3a://"):
            warehouse = "s3://" + warehouse[len("s3a://"):]
        opts.update({f"{p}.catalog-impl": "org.apache.iceberg.aws.glue.GlueCatalog",
                     f"{p}.io-impl": "org.apache.iceberg.aws.s3.S3FileIO",
                     f"{p}.warehouse": warehouse})
    else:  # hive
        if not catalog.get("uri"):
            raise UserError("catalog.type hive needs catalog.uri (thrift://HOST:9083)")
        opts.update({f"{p}.type": "hive", f"{p}.uri": str(catalog["uri"]),
                     f"{p}.warehouse": warehouse})
    for key, value in (catalog.get("options") or {}).items():
        opts[f"{p}.{key}"] = str(value)
    return name, opts


def use_iceberg_catalog(spark, catalog: Mapping[str, Any] | None, lake: str) -> str:
    """Configure (on the live session) the catalog of ``lake``; returns its name."""
    name, opts = iceberg_catalog(catalog, lake)
    if catalog_type(catalog) == "embedded":
        from .fs import HadoopFS

        HadoopFS(spark).mkdirs(lake)  # the SQLite file's directory
    for key, value in opts.items():
        if spark.conf.get(key, None) != value:
            spark.conf.set(key, value)
    return name

