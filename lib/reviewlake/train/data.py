"""tf.data input pipelines over the TFRecords of prepare, sharded per Horovod process."""
from __future__ import annotations

import logging
import math
import os
from typing import Sequence

import numpy as np
import tensorflow as tf

from .meta import Features

log = logging.getLogger(__name__)


def parse_spec(max_seq_length: int) -> dict:
    """The book's parse spec: three fixed-length sequences and a scalar label."""
    return {
        "input_ids": tf.io.FixedLenFeature([max_seq_length], tf.int64),
        "input_mask": tf.io.FixedLenFeature([max_seq_length], tf.int64),
        "segment_ids": tf.io.FixedLenFeature([max_seq_length], tf.int64),
        "label_ids": tf.io.FixedLenFeature([], tf.int64),
    }


def file_records(features: Features, split: str) -> list[tuple[str, int]]:
    """(path, records) of a split's files, sorted by path: the counts prepare wrote in
    ``_meta.json`` (``splits.<split>.file_records``), or, for features written before it
    kept them, counted by reading the files once."""
    files = sorted(features.files(split))
    known = features.meta["splits"][split].get("file_records") or {}
    rel = {path: os.path.relpath(path, features.root).replace(os.sep, "/") for path in files}
    if all(rel[f] in known for f in files):
        return [(f, int(known[rel[f]])) for f in files]
    log.info("%s: no per-file record counts in _meta.json (features from an older prepare); "
             "counting the %d files", split, len(files))
    out = []
    for f in files:
        ds = tf.data.TFRecordDataset(f, compression_type=features.compression or "")
        out.append((f, int(ds.reduce(np.int64(0), lambda n, _: n + 1).numpy())))
    return out


def record_ranges(counts: Sequence[int], index: int, parts: int) -> list[tuple[int, int, int]]:
    """Process ``index`` of ``parts``'s share of records laid end to end over files with
    ``counts`` records: (file, first record, records) segments of the contiguous range
    [index * N // parts, (index + 1) * N // parts). Shares differ by at most one record,
    cover every record once, and do not depend on how many files there are."""
    total = sum(counts)
    start, end = index * total // parts, (index + 1) * total // parts
    out, at = [], 0
    for i, n in enumerate(counts):
        lo, hi = max(start, at), min(end, at + n)
        if lo < hi:
            out.append((i, lo - at, hi - lo))
        at += n
    return out


def shard_position(mode: str, rank: int, size: int, local_rank: int,
                   local_size: int) -> tuple[int, int]:
    """(index, count) a process uses to take its share of the train files it can see:
    by global rank when every process sees every file ("global"), by local rank when each
    host holds only its own share ("host", e.g. SageMaker's ShardedByS3Key channels)."""
    if mode == "host":
        return local_rank, local_size
    if mode == "global":
        return rank, size
    raise ValueError(f"unknown shard mode {mode!r}")


def steps_for(count: int, batch_size: int, size: int) -> int:
    """Steps so that one epoch is one pass over `count` records by `size` processes."""
    return max(1, math.ceil(count / (batch_size * size)))


def make_dataset(features: Features, split: str, batch_size: int, rank: int = 0, size: int = 1,
                 shuffle: bool = False, repeat: bool = False, seed: int = 42,
                 shuffle_buffer: int = 10000, shard: bool = True,
                 epoch_records: int | None = None, first_epoch: int = 0) -> tf.data.Dataset:
    """(inputs, label) batches: inputs = {"input_ids", "input_mask"} as int32, label int32.

    With ``shard``, process ``rank`` of ``size`` reads exactly its contiguous share of the
    split's records (:func:`record_ranges`, from the per-file counts): the shares are disjoint,
    cover the split and differ by at most one record, whatever the ratio of files to
    processes. Shuffling reorders files and records within the share, never the share.

    ``epoch_records`` (with ``repeat``): what one epoch of this process draws (steps x batch).
    When it is at least the share, every epoch is one whole pass over the share, topped up to
    ``epoch_records`` from the start of a further pass (at most one batch when the steps come
    from :func:`steps_for`, less than one per rank on average), so epochs stay aligned with passes; and epoch ``e``'s order is a
    function of (seed, rank, e) alone, so a run resumed at ``first_epoch`` reads what an
    uninterrupted run reads from that epoch on. Epochs shorter than the share (a capped
    ``steps_per_epoch``) take consecutive stretches of one stream, and a resumed run skips
    the stretches of the epochs before ``first_epoch``.
    """
    if shard:
        listed = file_records(features, split)
        segments = [(listed[i][0], skip, take) for i, skip, take in
                    record_ranges([n for _, n in listed], rank, size)]
    else:
        segments = [(f, 0, -1) for f in sorted(features.files(split))]
    share = sum(t for _, _, t in segments) if shard else None
    paths, skips, takes = zip(*segments) if segments else ((), (), ())
    segment_ds = tf.data.Dataset.from_tensor_slices((tf.constant(list(paths), tf.string),
                                                     tf.constant(skips, tf.int64),
                                                     tf.constant(takes, tf.int64)))
    compression = features.compression or ""
    n_segments = max(1, len(segments))

    def records(order_seed) -> tf.data.Dataset:
        # The records a process reads are fixed by its segments; the order by the seed.
        ds = segment_ds
        if shuffle:
            ds = ds.shuffle(n_segments, seed=order_seed, reshuffle_each_iteration=True)
        ds = ds.interleave(
            lambda f, skip, take: tf.data.TFRecordDataset(f, compression_type=compression)
            .skip(skip).take(take),
            cycle_length=min(4, n_segments), num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True)
        if shuffle:
            ds = ds.shuffle(shuffle_buffer, seed=order_seed, reshuffle_each_iteration=True)
        return ds

    if repeat and epoch_records and share and epoch_records >= share:
        base = int(seed) * 1_000_003 + int(rank) * 10_007

        def epoch(e):
            return records(tf.cast(base, tf.int64) + e).repeat().take(epoch_records)

        ds = tf.data.Dataset.range(int(first_epoch), 1 << 40).flat_map(epoch)
    else:
        ds = records(int(seed) + int(rank))
        if repeat:
            ds = ds.repeat()
            if epoch_records and first_epoch:
                # epochs shorter than a pass draw from one stream: a resumed run skips what
                # the epochs before it drew (read, not trained on)
                ds = ds.skip(int(first_epoch) * int(epoch_records))
    spec = parse_spec(features.max_seq_length)

    def to_inputs(batch):
        parsed = tf.io.parse_example(batch, spec)
        inputs = {"input_ids": tf.cast(parsed["input_ids"], tf.int32),
                  "input_mask": tf.cast(parsed["input_mask"], tf.int32)}
        return inputs, tf.cast(parsed["label_ids"], tf.int32)

    ds = ds.batch(batch_size, drop_remainder=repeat)
    return ds.map(to_inputs, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
