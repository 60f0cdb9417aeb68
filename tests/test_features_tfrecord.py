"""tf.train.Example and TFRecord files written without TensorFlow, checked against TensorFlow."""
import gzip
import os

import numpy as np
import pytest

from reviewlake.features import tfrecord as T

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.fixture(scope="module")
def tf():
    import tensorflow

    return tensorflow


def sample_features(n=300, length=64, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 30522, (n, length))
    ids[0, :3] = [0, 127, 128]                    # varint boundaries
    ids[1, :4] = [16383, 16384, 2**31 - 1, 2**40]
    ids[2, 0] = -1                                # int64 below zero: 10-byte varint
    ids[3, 0] = -(2**63)
    mask = (np.arange(length) < rng.integers(1, length + 1, n)[:, None]).astype(np.int64)
    return {"input_ids": ids, "input_mask": mask, "segment_ids": np.zeros((n, length), np.int64),
            "label_ids": rng.integers(0, 5, n)}


def tf_example(tf, features, i):
    feats = {}
    for name, values in features.items():
        row = values[i] if values.ndim == 2 else [values[i]]
        feats[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in row]))
    return tf.train.Example(features=tf.train.Features(feature=feats))


def test_varint_matches_protobuf():
    for value, expected in [(0, b"\x00"), (1, b"\x01"), (127, b"\x7f"), (128, b"\x80\x01"),
                            (300, b"\xac\x02"), (-1, b"\xff" * 9 + b"\x01")]:
        assert T.varint(value) == expected
    flat, lens = T.varints(np.array([[0, 128, 300], [-1, 1, 16384]]))
    assert flat == b"\x00\x80\x01\xac\x02" + b"\xff" * 9 + b"\x01" + b"\x01\x80\x80\x01"
    assert lens.tolist() == [5, 14]


def test_examples_equal_tensorflow_serialization(tf):
    features = sample_features()
    records = T.encode_examples(features)
    for i, record in enumerate(records):
        ex = tf_example(tf, features, i)
        assert record == ex.SerializeToString(deterministic=True)
        parsed = tf.train.Example.FromString(record)
        assert parsed == ex   # and equal as messages to TF's default (unordered) bytes
        assert tf.train.Example.FromString(ex.SerializeToString()) == parsed
    assert T.decode_int64_example(records[2])["input_ids"][0] == -1
    assert T.decode_int64_example(records[3])["input_ids"][0] == -(2**63)


def test_empty_feature_and_single_values(tf):
    feats = {"a": np.zeros((2, 0), np.int64), "b": np.array([7, 8])}
    records = T.encode_examples(feats)
    for i in range(2):
        ex = tf.train.Example(features=tf.train.Features(feature={
            "a": tf.train.Feature(int64_list=tf.train.Int64List(value=[])),
            "b": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(feats["b"][i])]))}))
        assert records[i] == ex.SerializeToString(deterministic=True)


def test_tfrecord_bytes_identical_to_tensorflow_writer(tf, tmp_path):
    records = T.encode_examples(sample_features(500))
    ours, theirs = tmp_path / "ours.tfrecord", tmp_path / "tf.tfrecord"
    with T.TFRecordWriter.open(str(ours)) as w:
        w.write(records[0])
        w.write_many(records[1:])
        assert w.records == 500
    with tf.io.TFRecordWriter(str(theirs)) as w:
        for r in records:
            w.write(r)
    assert ours.read_bytes() == theirs.read_bytes()
    assert list(T.read_records(str(theirs))) == records


def test_gzip_records_read_by_tensorflow(tf, tmp_path):
    records = T.encode_examples(sample_features(200))
    ours, theirs = tmp_path / "ours.tfrecord.gz", tmp_path / "tf.tfrecord.gz"
    T.write_file(str(ours), records, "gzip")
    with tf.io.TFRecordWriter(str(theirs), options="GZIP") as w:
        for r in records:
            w.write(r)
    # zlib settings differ, the framed stream inside does not
    assert gzip.decompress(ours.read_bytes()) == gzip.decompress(theirs.read_bytes())
    got = [r.numpy() for r in tf.data.TFRecordDataset(str(ours), compression_type="GZIP")]
    assert got == records
    again = tmp_path / "again.tfrecord.gz"
    T.write_file(str(again), records, "gzip")
    assert again.read_bytes() == ours.read_bytes()   # reproducible bytes (no gzip timestamp)


def test_book_parse_spec_reads_the_records(tf, tmp_path):
    features = sample_features(50, length=16)
    path = tmp_path / "x.tfrecord"
    T.write_file(str(path), T.encode_examples(features))
    spec = {"input_ids": tf.io.FixedLenFeature([16], tf.int64),
            "input_mask": tf.io.FixedLenFeature([16], tf.int64),
            "segment_ids": tf.io.FixedLenFeature([16], tf.int64),
            "label_ids": tf.io.FixedLenFeature([], tf.int64)}
    ds = tf.data.TFRecordDataset(str(path)).map(lambda r: tf.io.parse_single_example(r, spec))
    rows = list(ds)
    assert len(rows) == 50
    for i, row in enumerate(rows):
        for name in ("input_ids", "input_mask", "segment_ids"):
            assert row[name].numpy().tolist() == features[name][i].tolist()
        assert int(row["label_ids"]) == int(features["label_ids"][i])


def test_corruption_is_detected(tmp_path):
    path = tmp_path / "x.tfrecord"
    T.write_file(str(path), [b"hello", b"world"])
    data = bytearray(path.read_bytes())
    data[14] ^= 0xFF  # inside the first record's data
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="crc mismatch"):
        list(T.read_records(str(path)))
    path.write_bytes(bytes(data[:-3]))
    with pytest.raises(ValueError, match="truncated"):
        list(T.read_records(str(path), check_crc=False))


def test_prepare_modules_do_not_import_tensorflow():
    import subprocess
    import sys

    code = ("import sys; from reviewlake.features import job, tokenizer, write, encode, tfrecord, cli; "
            "tok = tokenizer.train_wordpiece(['a good product', 'a bad one'] * 20, 50); "
            "enc = encode.Encoder(tok.backend_tokenizer.to_str(), 8, tok.pad_token_id, "
            "tok.sep_token_id); enc.encode(['good']); "
            "tfrecord.encode_examples({'x': __import__('numpy').zeros((1, 2), 'int64')}); "
            "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
