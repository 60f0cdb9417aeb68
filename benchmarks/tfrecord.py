"""The prepare stage's TFRecord writer (no TensorFlow) against TensorFlow's TFRecordWriter.

    python benchmarks/tfrecord.py [--records 500000] [--repeats 3]

Same records, same disk, one process. The records are tf.train.Example with the stage's
four features (max_seq_length 64), ids drawn like WordPiece ids of real reviews.

* framing (the goal): already serialized Examples written to a file. Ours: TFRecordWriter
  .write_many per batch of 10,000 (as each Spark task does); TensorFlow: tf.io.TFRecordWriter
  .write per record. Bytes/s of the file written. Also with gzip (zlib level 6 both).
* end to end, from the integer arrays to the file (a subset, --e2e-records): ours
  encode_examples + write_many; TensorFlow: tf.train.Example built from the arrays,
  SerializeToString, write (the book's code).

Goal: our framing bytes/s >= 0.8 x TensorFlow's.
"""
from __future__ import annotations

import argparse
import os

from common import WORK, goal, goal_lines, machine, med, median_times, save, table

GOAL = 0.8
LENGTH = 64
BATCH = 10_000


def make_features(n: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    real = np.clip(rng.lognormal(np.log(40), 0.8, n).astype(int), 3, LENGTH)
    pos = np.arange(LENGTH)
    mask = (pos < real[:, None]).astype(np.int64)
    # Zipf-like ids: most below 2^14 (two varint bytes), some above (three)
    ids = np.minimum(rng.zipf(1.3, (n, LENGTH)) + 998, 30521)
    ids[:, 0] = 101
    ids[np.arange(n), real - 1] = 102
    ids = np.where(mask == 1, ids, 0)
    return {"input_ids": ids, "input_mask": mask, "segment_ids": np.zeros((n, LENGTH), np.int64),
            "label_ids": rng.integers(0, 5, n)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=500_000)
    ap.add_argument("--e2e-records", type=int, default=50_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    from reviewlake.features import tfrecord as T

    features = make_features(args.records)
    records = []
    for i in range(0, args.records, BATCH):
        records += T.encode_examples({k: v[i:i + BATCH] for k, v in features.items()})
    out = WORK / "tfrecord_out"
    out.mkdir(parents=True, exist_ok=True)
    paths = {k: str(out / k) for k in ("ours", "tf", "ours_gz", "tf_gz", "e2e_ours", "e2e_tf")}

    def ours(path, compression="none", recs=records):
        with T.TFRecordWriter.open(path, compression) as w:
            for i in range(0, len(recs), BATCH):
                w.write_many(recs[i:i + BATCH])

    def theirs(path, options=None, recs=records):
        with tf.io.TFRecordWriter(path, options=options) as w:
            for r in recs:
                w.write(r)

    e2e = {k: v[:args.e2e_records] for k, v in features.items()}

    def ours_e2e():
        with T.TFRecordWriter.open(paths["e2e_ours"]) as w:
            for i in range(0, args.e2e_records, BATCH):
                w.write_many(T.encode_examples({k: v[i:i + BATCH] for k, v in e2e.items()}))

    def theirs_e2e():
        Feature, Int64List = tf.train.Feature, tf.train.Int64List
        with tf.io.TFRecordWriter(paths["e2e_tf"]) as w:
            for i in range(args.e2e_records):
                feats = {"input_ids": Feature(int64_list=Int64List(value=e2e["input_ids"][i])),
                         "input_mask": Feature(int64_list=Int64List(value=e2e["input_mask"][i])),
                         "segment_ids": Feature(int64_list=Int64List(value=e2e["segment_ids"][i])),
                         "label_ids": Feature(int64_list=Int64List(value=[e2e["label_ids"][i]]))}
                ex = tf.train.Example(features=tf.train.Features(feature=feats))
                w.write(ex.SerializeToString())

    sides = {
        "ours": lambda: ours(paths["ours"]), "tf": lambda: theirs(paths["tf"]),
        "ours_gz": lambda: ours(paths["ours_gz"], "gzip"),
        "tf_gz": lambda: theirs(paths["tf_gz"], "GZIP"),
        "e2e_ours": ours_e2e, "e2e_tf": theirs_e2e,
    }
    times = median_times(sides, repeats=args.repeats, warmup=1)
    m = {k: med(v) for k, v in times.items()}
    # bytes/s of the uncompressed stream (the same for both sides of each pair)
    size = {"ours": os.path.getsize(paths["ours"]), "e2e": os.path.getsize(paths["e2e_ours"])}
    assert size["ours"] == os.path.getsize(paths["tf"]), "the two writers wrote different bytes"
    assert size["e2e"] == os.path.getsize(paths["e2e_tf"])
    n = {k: args.e2e_records if k.startswith("e2e") else args.records for k in m}
    nbytes = {k: size["e2e"] if k.startswith("e2e") else size["ours"] for k in m}
    rate = {k: nbytes[k] / m[k] for k in m}
    labels = {
        "ours": "reviewlake TFRecordWriter.write_many (no TF)",
        "tf": "tf.io.TFRecordWriter.write",
        "ours_gz": "reviewlake, gzip",
        "tf_gz": "tf.io.TFRecordWriter, GZIP",
        "e2e_ours": "end to end: encode_examples + write_many",
        "e2e_tf": "end to end: tf.train.Example + SerializeToString + write",
    }
    pair = {"ours": "tf", "tf": "tf", "ours_gz": "tf_gz", "tf_gz": "tf_gz",
            "e2e_ours": "e2e_tf", "e2e_tf": "e2e_tf"}
    rows = [[labels[k], f"{n[k]:,}", f"{m[k]:.2f}", f"{rate[k] / 1e6:,.1f}",
             f"{n[k] / m[k]:,.0f}", f"{rate[k] / rate[pair[k]]:.2f}"] for k in labels]
    mc = machine()
    text = table(f"tfrecord: {args.records:,} Examples ({size['ours'] / 1e6:.0f} MB, "
                 f"{size['ours'] / args.records:.0f} bytes each), median of {args.repeats}, "
                 f"{mc['cores']} cores (one used)",
                 ["side", "records", "seconds", "MB/s (uncompressed)", "records/s", "vs TF"], rows)
    ratio = rate["ours"] / rate["tf"]
    goals = [goal("Python TFRecord writer bytes/s / tf.io.TFRecordWriter bytes/s", ratio, GOAL)]
    print(text)
    print(f"\ngzip {rate['ours_gz'] / rate['tf_gz']:.2f}x; end to end "
          f"{rate['e2e_ours'] / rate['e2e_tf']:.1f}x")
    print(goal_lines(goals))
    save("tfrecord", {"records": args.records, "bytes": size["ours"], "times": times,
                      "median_seconds": m, "bytes_per_second": rate, "ratio": ratio,
                      "ratio_gzip": rate["ours_gz"] / rate["tf_gz"],
                      "ratio_end_to_end": rate["e2e_ours"] / rate["e2e_tf"],
                      "table": text, "goals": goals})
    for p in paths.values():
        if os.path.exists(p):
            os.remove(p)


if __name__ == "__main__":
    main()
