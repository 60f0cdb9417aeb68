"""tf.data input pipelines over the TFRecords of prepare, sharded per Horovod process."""
from __future__ import annotations

import math

import tensorflow as tf

from .meta import Features


def parse_spec(max_seq_length: int) -> dict:
    """The book's parse spec: three fixed-length sequences and a scalar label."""
    return {
        "input_ids": tf.io.FixedLenFeature([max_seq_length], tf.int64),
        "input_mask": tf.io.FixedLenFeature([max_seq_length], tf.int64),
        "segment_ids": tf.io.FixedLenFeature([max_seq_length], tf.int64),
        "label_ids": tf.io.FixedLenFeature([], tf.int64),
    }


def shard_files(files: list[str], rank: int, size: int) -> tuple[list[str], bool]:
    """Whole files per process when there are at least as many files as processes, else
    every process reads all files and keeps every size-th record (returns records=True)."""
    files = sorted(files)
    if len(files) >= size:
        return files[rank::size], False
    return files, True


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
                 shuffle_buffer: int = 10000, shard: bool = True) -> tf.data.Dataset:
    """(inputs, label) batches: inputs = {"input_ids", "input_mask"} as int32, label int32."""
    files, by_record = shard_files(features.files(split), rank, size) if shard else \
        (sorted(features.files(split)), False)
    ds = tf.data.Dataset.from_tensor_slices(files)
    if shuffle:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = ds.interleave(
        lambda f: tf.data.TFRecordDataset(f, compression_type=features.compression or ""),
        cycle_length=min(4, max(1, len(files))), num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=not shuffle)
    if by_record and shard:
        ds = ds.shard(size, rank)
    if shuffle:
        # A new order every epoch, the same sequence of orders for the same seed.
        ds = ds.shuffle(shuffle_buffer, seed=seed + rank, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    spec = parse_spec(features.max_seq_length)

    def to_inputs(records):
        parsed = tf.io.parse_example(records, spec)
        inputs = {"input_ids": tf.cast(parsed["input_ids"], tf.int32),
                  "input_mask": tf.cast(parsed["input_mask"], tf.int32)}
        return inputs, tf.cast(parsed["label_ids"], tf.int32)

    ds = ds.batch(batch_size, drop_remainder=repeat)
    return ds.map(to_inputs, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
