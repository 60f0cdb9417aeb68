"""The baseline beside every model: Spark MLlib hashing TF-IDF + multinomial logistic
regression, fitted on the same train split and evaluated on the same validation and test
splits as the network.

It reads the features' Parquet copy (``FEATURES/parquet``, written by prepare with the same
rows and split column as the TFRecords) and takes each review's WordPiece tokens (the
non-padding ``input_ids``: the same tokenization and the same max_seq_length window the
network sees) as its terms: term frequencies hashed into ``num_features`` buckets, IDF
weighting, then a multinomial logistic regression with elastic-net regularisation. Nothing
but the metrics reaches the driver.
"""
from __future__ import annotations

import os
import time
from typing import Any

from ..errors import UserError

DEFAULTS = {"num_features": 1 << 18, "min_doc_freq": 2, "max_iter": 100, "reg_param": 0.001,
            "elastic_net": 0.0}
DESCRIPTION = "hashing TF-IDF + multinomial logistic regression (Spark MLlib)"


def fit_baseline(spark, features_root: str, meta: dict[str, Any],
                 options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fit on train, evaluate on validation and test; the metrics as a dict."""
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import IDF, HashingTF
    from pyspark.sql import functions as F

    opts = dict(DEFAULTS, **(options or {}))
    parquet = meta.get("parquet", {}).get("path", "parquet")
    path = parquet if "://" in parquet or os.path.isabs(parquet) else \
        features_root.rstrip("/") + "/" + parquet
    split_col = meta.get("parquet", {}).get("partitioned_by", "split")
    started = time.time()
    try:
        df = spark.read.parquet(path)
    except Exception as exc:  # noqa: BLE001 - a missing copy is a user-facing problem
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"the baseline needs the features' Parquet copy at {path}: "
                        f"{first[:160]} (or set train.baseline false)") from None
    docs = df.select(
        F.col(split_col).alias("split"), F.col("label_ids").cast("double").alias("label"),
        F.expr("transform(filter(input_ids, (x, i) -> input_mask[i] = 1), "
               "x -> cast(x AS string))").alias("terms"))
    pipeline = Pipeline(stages=[
        HashingTF(inputCol="terms", outputCol="tf", numFeatures=int(opts["num_features"])),
        IDF(inputCol="tf", outputCol="features", minDocFreq=int(opts["min_doc_freq"])),
        LogisticRegression(family="multinomial", maxIter=int(opts["max_iter"]),
                           regParam=float(opts["reg_param"]),
                           elasticNetParam=float(opts["elastic_net"]))])
    train = docs.where(F.col("split") == "train")
    model = pipeline.fit(train)
    out: dict[str, Any] = {"model": DESCRIPTION, "terms": "WordPiece tokens of the features",
                           "options": opts}
    for split in ("train", "validation", "test"):
        scored = model.transform(docs.where(F.col("split") == split))
        row = scored.agg(F.count(F.lit(1)).alias("n"),
                         F.sum((F.col("prediction") == F.col("label")).cast("long"))
                         .alias("right")).first()
        n = int(row["n"] or 0)
        out[split] = {"accuracy": (int(row["right"] or 0) / n) if n else None, "count": n}
    out["seconds"] = round(time.time() - started, 3)
    return out


def attach(metrics: dict[str, Any], baseline: dict[str, Any]) -> dict[str, Any]:
    """metrics.json with the baseline beside the model, and whether the model beats it."""
    metrics = dict(metrics)
    metrics["baseline"] = baseline
    ours, theirs = metrics["test"]["accuracy"], baseline["test"]["accuracy"]
    metrics["beats_baseline"] = bool(theirs is None or ours > theirs)
    return metrics
