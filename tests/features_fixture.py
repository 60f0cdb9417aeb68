"""A small features directory in prepare's contract, built without Spark (train tests only).

Balanced generated reviews, a WordPiece vocabulary trained on them, TFRecords written with
TensorFlow's own writer and a _meta.json with the fields train reads.

Records that carry their id (for the tests that check what each process reads): in
``input_ids[0]``, the ids 0..N-1 laid end to end over a split's files in sorted order;
``id_features`` writes such a split from scratch, ``stamp_record_ids`` stamps the ids into a
prepared split (in place of [CLS]), ``ids_of`` reads them back from a dataset.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def make_features(root: Path, rows: int = 6000, max_seq_length: int = 32, files: int = 2,
                  seed: int = 7, vocab_size: int = 2000) -> Path:
    import tensorflow as tf
    from tokenizers import BertWordPieceTokenizer
    from transformers import DistilBertTokenizerFast

    from reviewlake.generate import generate

    raw = root / "_raw"
    gen = generate(rows=rows, output=raw, seed=seed, files=1)
    lines = (raw / gen.files[0]).read_text().split("\n")[1:-1]
    by_star: dict[int, list[str]] = {}
    for line in lines:
        f = line.split("\t")
        by_star.setdefault(int(f[7]), []).append(f[13])
    n = min(len(v) for v in by_star.values())
    rng = np.random.default_rng(seed)
    splits = {"train": [], "validation": [], "test": []}
    for star, texts in sorted(by_star.items()):
        picked = [texts[i] for i in rng.permutation(len(texts))[:n]]
        a, b = int(n * 0.8), int(n * 0.9)
        for name, part in (("train", picked[:a]), ("validation", picked[a:b]), ("test", picked[b:])):
            splits[name] += [(t, star - 1) for t in part]
    wp = BertWordPieceTokenizer(lowercase=True)
    wp.train_from_iterator([t for t, _ in splits["train"]], vocab_size=vocab_size)
    tok_dir = root / "tokenizer"
    tok_dir.mkdir(parents=True, exist_ok=True)
    wp.save_model(str(tok_dir))
    tokenizer = DistilBertTokenizerFast(vocab_file=str(tok_dir / "vocab.txt"), do_lower_case=True)
    tokenizer.save_pretrained(str(tok_dir))
    meta = {"format": "tfrecord", "compression": "none", "max_seq_length": max_seq_length,
            "num_labels": 5, "label_offset": 1, "splits": {},
            "tokenizer": {"path": "tokenizer", "kind": "trained-wordpiece",
                          "vocab_size": len(tokenizer)}}
    for name, items in splits.items():
        order = rng.permutation(len(items))
        items = [items[i] for i in order]
        enc = tokenizer([t for t, _ in items], max_length=max_seq_length, padding="max_length",
                        truncation=True)
        (root / name).mkdir(exist_ok=True)
        paths, per_file = [], {}
        for k in range(files):
            rel = f"{name}/part-{k:05d}.tfrecord"
            paths.append(rel)
            per_file[rel] = len(range(k, len(items), files))
            with tf.io.TFRecordWriter(str(root / rel)) as w:
                for i in range(k, len(items), files):
                    feats = {
                        "input_ids": enc["input_ids"][i], "input_mask": enc["attention_mask"][i],
                        "segment_ids": [0] * max_seq_length, "label_ids": [items[i][1]]}
                    ex = tf.train.Example(features=tf.train.Features(feature={
                        k2: tf.train.Feature(int64_list=tf.train.Int64List(value=v))
                        for k2, v in feats.items()}))
                    w.write(ex.SerializeToString())
        labels = {str(l): sum(1 for _, x in items if x == l) for l in range(5)}
        meta["splits"][name] = {"count": len(items), "labels": labels, "files": paths,
                                "file_records": per_file}
    (root / "_meta.json").write_text(json.dumps(meta, indent=2))
    return root


def id_features(root, counts, with_counts=True, name="train"):
    """A features directory whose records carry their id in input_ids[0]: files of
    ``counts`` records (ids 0..sum-1 laid end to end), with or without per-file counts."""
    import json

    import tensorflow as tf

    (root / name).mkdir(parents=True)
    files, per_file, at = [], {}, 0
    for k, n in enumerate(counts):
        rel = f"{name}/part-{k:05d}.tfrecord"
        with tf.io.TFRecordWriter(str(root / rel)) as w:
            for i in range(at, at + n):
                feats = {"input_ids": [i, 1, 1, 1], "input_mask": [1] * 4,
                         "segment_ids": [0] * 4, "label_ids": [i % 5]}
                w.write(tf.train.Example(features=tf.train.Features(feature={
                    key: tf.train.Feature(int64_list=tf.train.Int64List(value=v))
                    for key, v in feats.items()})).SerializeToString())
        files.append(rel)
        per_file[rel] = n
        at += n
    split = {"count": at, "files": files}
    if with_counts:
        split["file_records"] = per_file
    meta = {"max_seq_length": 4, "compression": "none", "splits": {name: split}}
    (root / "_meta.json").write_text(json.dumps(meta))
    from reviewlake.train.meta import Features

    return Features(root=str(root), meta=meta)


def ids_of(ds, batches=None):
    out = []
    for i, (inputs, _) in enumerate(ds):
        if batches is not None and i == batches:
            break
        out += inputs["input_ids"][:, 0].numpy().tolist()
    return out


def stamp_record_ids(root: Path, split: str = "train") -> int:
    """Rewrite a features directory's ``split`` so that each record carries its id in
    ``input_ids[0]`` (0..N-1 over the split's files in sorted order, laid end to end, as
    ``id_features``; the rest of each record unchanged). The ids are token ids the model
    embeds, so N must stay under the tokenizer's vocabulary size. Returns N."""
    import tensorflow as tf

    meta = json.loads((root / "_meta.json").read_text())
    files = sorted(meta["splits"][split]["files"])
    vocab = meta.get("tokenizer", {}).get("vocab_size")
    if vocab is not None and meta["splits"][split]["count"] > vocab:
        raise ValueError(f"{meta['splits'][split]['count']} {split} records: ids past the "
                         f"vocabulary ({vocab} tokens)")
    at = 0
    for rel in files:
        path = root / rel
        examples = [tf.train.Example.FromString(r.numpy())
                    for r in tf.data.TFRecordDataset(str(path))]
        with tf.io.TFRecordWriter(str(path) + ".tmp") as w:
            for ex in examples:
                ex.features.feature["input_ids"].int64_list.value[0] = at
                w.write(ex.SerializeToString())
                at += 1
        (root / (rel + ".tmp")).replace(path)
    return at
