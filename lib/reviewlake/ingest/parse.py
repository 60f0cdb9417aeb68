"""Parsing the public TSV layout into typed rows, entirely in the JVM (no Python UDFs).

Every line of every input file is read once as text (line separator ``\\n`` only, so a
carriage return stays visible inside its line). Files exported on Windows end their lines with
CRLF and may start with a UTF-8 byte-order mark: the CR just before the ``\\n`` is part of the
line terminator, and a U+FEFF opening a line of a file's first split is the byte-order mark;
neither is part of any field (the quarantine keeps the line as read, CR and all). A CR
anywhere else in a line is the ``carriage_return`` defect. Each line is either

* the header (exactly the 15 column names): not a data row;
* a good row: 15 fields, integers where integers belong, ``yyyy-MM-dd`` dates (empty fields
  become null, as Spark's csv reader does); or
* a rejected row, with a reason code and a human-readable detail.

The first rule that matches gives the reason, in this order: ``empty_line``,
``invalid_utf8``, ``carriage_return``, ``too_few_fields``, ``too_many_fields``,
``bad_integer``, ``bad_date``. Semantic problems (a rating of 7, a duplicate id, an unknown
marketplace) are not ingest's to judge: those rows pass through to the quality stage.
"""
from __future__ import annotations

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from ..schema import (DATE_FORMAT, HEADER_LINE, LAKE_COLUMNS, N_COLUMNS,
                      PARTITION_COLUMN, RAW_COLUMNS)

REASONS = ("empty_line", "invalid_utf8", "carriage_return", "too_few_fields",
           "too_many_fields", "bad_integer", "bad_date")

# Internal columns carried from the scan (underscored: they never reach the lake).
LINE = "_line"        # the line as read (what the quarantine keeps)
TEXT = "_text"        # the line without its CRLF's CR and a leading byte-order mark
FILE = "_file"
SPLIT_START = "_split_start"
ROW_ID = "_row_id"
FIELDS = "_fields"
REASON = "_reason"
DETAIL = "_detail"
HEADER = "_is_header"


def read_lines(spark: SparkSession, paths: list[str], spread: int | None = None) -> DataFrame:
    """One row per line: text, file, start of its split and a per-partition row id.

    The row id (``monotonically_increasing_id`` right above the scan) and the split start
    let ingest compute exact line numbers for rejected lines afterwards (see
    :func:`split_line_counts`).

    ``spread``: hash-partition the lines into this many partitions right after the scan, so
    that a file Spark must read in one task (gzip) is parsed and written by every core. The
    row id and split start are fixed before the shuffle, so line numbers stay exact, and the
    partitioning is by the (deterministic) row id, so a re-run map task sends every line to
    the same place.
    """
    text = spark.read.option("lineSep", "\n").text(paths)
    if not spread:
        # The split lives in the same projection as the (non-deterministic) row id, so the
        # optimizer cannot push filters below it and re-split the line in every predicate.
        return text.select(*_line_columns(F.col("value"), F.input_file_block_start(),
                                          F.input_file_name(), F.monotonically_increasing_id()))
    # Only the line and its position cross the shuffle; the split is made after it.
    scanned = text.select(F.col("value").alias(LINE), F.input_file_name().alias(FILE),
                          F.input_file_block_start().alias(SPLIT_START),
                          F.monotonically_increasing_id().alias(ROW_ID))
    scanned = scanned.repartition(int(spread), F.col(ROW_ID))
    return scanned.select(*_line_columns(F.col(LINE), F.col(SPLIT_START), F.col(FILE),
                                         F.col(ROW_ID)))


def _line_columns(value: Column, start: Column, file: Column, row_id: Column) -> list[Column]:
    # CRLF: one CR right before the LF belongs to the terminator. A BOM can only open the
    # file, whose first line is in the split starting at byte 0.
    no_cr = F.when(value.endswith("\r"), value.substr(F.lit(1), F.length(value) - 1)) \
        .otherwise(value)
    cleaned = F.when((start == 0) & no_cr.startswith("\ufeff"),
                     no_cr.substr(F.lit(2), F.length(no_cr))).otherwise(no_cr)
    return [value.alias(LINE), cleaned.alias(TEXT), F.split(cleaned, "\t", -1).alias(FIELDS),
            file.alias(FILE), start.alias(SPLIT_START), row_id.alias(ROW_ID)]

def split_line_counts(spark: SparkSession, paths: list[str]) -> DataFrame:
    """Lines per input split and the row id of each split's first line (same scan plan)."""
    lines = read_lines(spark, paths)
    return lines.groupBy(FILE, SPLIT_START).agg(
        F.min(ROW_ID).alias("first_row_id"), F.count(F.lit(1)).alias("lines"))


def _field(i: int) -> Column:
    return F.col(FIELDS).getItem(i)


def _typed_values() -> dict[str, Column]:
    """Each lake column computed from the split fields (meaningful for good rows only).

    The integer and date expressions are the very ones the checks below test, so Spark's
    subexpression elimination evaluates each once per row.
    """
    out: dict[str, Column] = {}
    for i, (name, kind) in enumerate(RAW_COLUMNS):
        raw = _field(i)
        if kind == "int":
            out[name] = F.expr(f"try_cast({FIELDS}[{i}] AS INT)")
        elif kind == "date":
            out[name] = F.to_date(raw, DATE_FORMAT)
        else:
            out[name] = F.nullif(raw, F.lit(""))
    out["year"] = F.year(out["review_date"])
    out["source_file"] = F.col(FILE)
    return out


def classify(lines: DataFrame) -> DataFrame:
    """Lines -> typed lake columns plus ``_is_header``, ``_reason`` and ``_detail``.

    ``_reason`` is null for good rows and headers. Internal columns of ``lines`` are kept.
    """
    values = _typed_values()
    line = F.col(TEXT)
    flags: dict[str, Column] = {
        "_f_empty": line == "",
        # The split decodes the line and re-encodes each field, turning invalid bytes into
        # U+FFFD; valid UTF-8 survives that round trip byte for byte, invalid UTF-8 does not.
        "_f_utf8": F.concat_ws("\t", F.col(FIELDS)) != line,
        "_f_cr": line.contains("\r"),
        "_nf": F.size(FIELDS),
        HEADER: line == HEADER_LINE,
    }
    checks: list[tuple[str, str, str, int]] = []  # (flag column, reason, detail prefix, field)
    for i, (name, kind) in enumerate(RAW_COLUMNS):
        if kind not in ("int", "date"):
            continue
        raw = _field(i)
        flag = f"_f_{name}"
        # Empty means null (as Spark's csv reader has it); anything else must parse, strictly:
        # an integer must be written canonically (no sign, space, decimal point or leading
        # zero: it survives int -> string unchanged), a date exactly as yyyy-MM-dd (the
        # parser is strict: no single-digit month, no 30 February, no trailing text).
        if kind == "int":
            flags[flag] = (raw != "") & (values[name].isNull()
                                         | (values[name].cast("string") != raw))
        else:
            flags[flag] = (raw != "") & values[name].isNull()
        what = "not an integer" if kind == "int" else "not a yyyy-MM-dd date"
        checks.append((flag, "bad_integer" if kind == "int" else "bad_date", f"{name} {what}", i))

    keep = [c for c in lines.columns if c not in (FIELDS, TEXT)]
    df = lines.select(*keep, FIELDS, *[v.alias(k) for k, v in values.items()],
                      *[v.alias(k) for k, v in flags.items()])

    nf = F.col("_nf")
    fields_detail = F.format_string(f"%d fields, expected {N_COLUMNS}", nf)
    rules: list[tuple[Column, str, Column]] = [
        (F.col(HEADER), None, F.lit(None)),
        (F.col("_f_empty"), "empty_line", F.lit("empty line")),
        (F.col("_f_utf8"), "invalid_utf8", F.lit("line is not valid UTF-8")),
        (F.col("_f_cr"), "carriage_return", F.lit("carriage return inside the line")),
        (nf < N_COLUMNS, "too_few_fields", fields_detail),
        (nf > N_COLUMNS, "too_many_fields", fields_detail),
    ]
    for flag, reason, prefix, i in checks:
        text = F.concat(F.lit(f"{prefix}: '"), F.substring(_field(i), 1, 40), F.lit("'"))
        rules.append((F.col(flag), reason, text))
    reason_col = detail_col = None
    for cond, reason, detail in rules:
        r = F.lit(reason).cast("string")
        d = detail.cast("string")
        reason_col = F.when(cond, r) if reason_col is None else reason_col.when(cond, r)
        detail_col = F.when(cond, d) if detail_col is None else detail_col.when(cond, d)
    return df.withColumn(REASON, reason_col).withColumn(DETAIL, detail_col) \
        .drop(FIELDS, *[k for k in flags if k != HEADER])


def lake_columns() -> list[str]:
    """Column order of the lake's data files followed by the partition column."""
    return [name for name, _ in LAKE_COLUMNS] + [PARTITION_COLUMN]


def parse(lines: DataFrame) -> DataFrame:
    """Lines -> good rows with the lake's columns (rejected rows and headers dropped).

    For callers that want the good rows only (tests, notebooks); the ingest job itself writes
    good and rejected rows in one pass (see :mod:`reviewlake.ingest.job`).
    """
    df = classify(lines)
    return df.where(~F.col(HEADER) & F.col(REASON).isNull()).select(*lake_columns())


def rejected(lines: DataFrame) -> DataFrame:
    """Lines -> rejected rows (file, split start, row id, reason, detail, raw text)."""
    df = classify(lines)
    return df.where(F.col(REASON).isNotNull()).select(
        F.col(FILE).alias("source_file"), F.col(SPLIT_START).alias("split_start"),
        F.col(ROW_ID).alias("row_id"), F.col(REASON).alias("reason"),
        F.col(DETAIL).alias("detail"), F.col(LINE).alias("raw"))

