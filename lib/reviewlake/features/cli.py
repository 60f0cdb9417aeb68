"""``reviewlake prepare``: the lake -> balanced, split, tokenized TFRecords (+ Parquet)."""
from __future__ import annotations

import argparse
import os
from typing import Any

from ..cli import add_common, add_snapshot_args, load_config
from ..errors import UserError
from ..fs import check_writable_output, is_remote


def register(sub) -> None:
    p = sub.add_parser("prepare", help="balanced, split, BERT-tokenized TFRecords from the lake")
    add_common(p)
    p.add_argument("--input", metavar="LAKE",
                   help="the lake written by ingest; local, hdfs://, s3a:// (default: "
                        "prepare.input, else data.lake)")
    p.add_argument("--output", metavar="FEATURES", help="output directory (default: data.features)")
    add_snapshot_args(p)
    p.add_argument("--max-seq-length", type=int, metavar="N",
                   help="tokens per example, [CLS] and [SEP] included (default: 64)")
    p.add_argument("--split", metavar="TRAIN,VALIDATION,TEST",
                   help="fractions per star rating (default: 0.90,0.05,0.05)")
    p.add_argument("--clean-text", action=argparse.BooleanOptionalAction, default=None,
                   help="clean markup (tags, HTML entities, control characters, runs of "
                        "whitespace) before tokenizing (default: on)")
    p.add_argument("--balance", action=argparse.BooleanOptionalAction, default=None,
                   help="undersample every star rating to the smallest class (default: on)")
    tok = p.add_mutually_exclusive_group()
    tok.add_argument("--tokenizer", metavar="DIR",
                     help="a saved Hugging Face tokenizer directory (local or s3a://), e.g. a "
                          "staged distilbert-base-uncased (default: train a WordPiece vocabulary)")
    tok.add_argument("--vocab-size", type=int, metavar="N",
                     help="size of the trained WordPiece vocabulary (default: 30522)")
    p.add_argument("--categories", nargs="+", metavar="CATEGORY",
                   help="only these product categories (partition pruning); quote names with "
                        "spaces, e.g. 'Video Games' Books")
    p.add_argument("--seed", type=int, help="seed of the balance and the split (default: 42)")
    p.add_argument("--compression", choices=["none", "gzip"],
                   help="TFRecord compression (default: none)")
    p.add_argument("--writer", choices=["auto", "jar", "python"],
                   help="TFRecord writer: the spark-tfrecord jar, the Python writer, or auto "
                        "(the jar when it is on the classpath)")
    p.set_defaults(func=cmd_prepare)


def _split_categories(values) -> list[str] | None:
    if values is None:
        return None
    if isinstance(values, str):
        values = [values]
    out: list[str] = []
    for value in values:
        out.extend(part.strip() for part in str(value).split(",") if part.strip())
    return out


def cmd_prepare(args: argparse.Namespace) -> int:
    cfg = load_config(args, {
        "prepare.input": args.input, "data.features": args.output,
        "prepare.max_seq_length": args.max_seq_length, "prepare.split": args.split,
        "prepare.balance": args.balance, "prepare.tokenizer": args.tokenizer,
        "prepare.clean_text": args.clean_text,
        "prepare.vocab_size": args.vocab_size, "prepare.categories": args.categories,
        "prepare.seed": args.seed, "prepare.compression": args.compression,
        "prepare.writer": args.writer, "prepare.snapshot": args.snapshot,
        "prepare.as_of": args.as_of, "prepare.table": args.table,
    })
    if args.vocab_size is not None:  # the flag chooses training over a profile's directory
        cfg.set("prepare.tokenizer", None)
    print(summary(run(cfg)))
    return 0


def options_from(cfg) -> tuple[str, str, Any]:
    """(lake, features, PrepareOptions) from a profile, checked before Spark starts."""
    from .job import PrepareOptions

    pc = cfg.section("prepare")
    lake = pc.get("input") or cfg.get("data.lake")
    output = cfg.get("data.features")
    if not lake:
        raise UserError("no input given: pass --input LAKE or set data.lake in the profile")
    if not output:
        raise UserError("no output given: pass --output FEATURES or set data.features in the profile")
    if not is_remote(lake) and not pc.get("table"):
        local = os.path.expanduser(lake[7:] if lake.startswith("file://") else lake)
        if not (os.path.isdir(os.path.join(local, "reviews"))
                or os.path.isfile(os.path.join(local, "_reports", "ingest.json"))):
            raise UserError(f"no lake at {lake} ({os.path.join(local, 'reviews')} not found); "
                            f"run reviewlake ingest first or pass --input LAKE")
    tokenizer = pc.get("tokenizer")
    if tokenizer and not is_remote(tokenizer):
        local = tokenizer[7:] if tokenizer.startswith("file://") else tokenizer
        if not os.path.isdir(os.path.expanduser(local)):
            raise UserError(f"tokenizer directory not found: {tokenizer} (give a directory "
                            f"written by save_pretrained, e.g. a staged distilbert-base-uncased)")
    check_writable_output(output)
    opts = PrepareOptions(
        max_seq_length=_int(pc.get("max_seq_length", 64), "--max-seq-length"),
        split=pc.get("split", (0.90, 0.05, 0.05)),
        balance=bool(pc.get("balance", True)),
        clean_text=bool(pc.get("clean_text", True)),
        tokenizer=tokenizer or None,
        vocab_size=_int(pc.get("vocab_size", 30522), "--vocab-size"),
        tokenizer_sample_rows=_int(pc.get("tokenizer_sample_rows", 200_000),
                                   "prepare.tokenizer_sample_rows"),
        profile_sample_rows=_int(pc.get("profile_sample_rows", 20_000),
                                 "prepare.profile_sample_rows"),
        categories=_split_categories(pc.get("categories")),
        seed=_int(pc.get("seed", 42), "--seed"),
        compression=str(pc.get("compression", "none")),
        writer=str(pc.get("writer", "auto")),
        records_per_file=_int(pc.get("records_per_file", 200_000), "prepare.records_per_file"),
        min_files=_int(pc.get("min_files", 2), "prepare.min_files"),
        keep_runs=_int(pc.get("keep_runs", 2), "prepare.keep_runs"),
        catalog=cfg.section("catalog"),
        snapshot=None if pc.get("snapshot") is None else _int(pc["snapshot"], "--snapshot"),
        as_of=pc.get("as_of"), table=pc.get("table"),
    )
    opts.validate()
    return lake, output, opts


def run(cfg, spark=None) -> dict[str, Any]:
    """The stage from a loaded profile; returns the ``_meta.json`` content (the pipeline's
    result of this stage)."""
    from ..session import get_spark
    from .job import run_prepare

    lake, output, opts = options_from(cfg)
    spark = spark or get_spark(cfg, "prepare")
    return run_prepare(spark, lake, output, opts)


def _int(value: Any, name: str) -> int:
    try:
        if isinstance(value, bool):
            raise ValueError
        return int(value)
    except (TypeError, ValueError):
        raise UserError(f"{name} must be an integer, got {value!r}") from None


def summary(meta: dict[str, Any]) -> str:
    """The printed report of a run (from its ``_meta.json``)."""
    rows, dropped = meta["rows"], meta["dropped"]
    src = meta.get("lake") or {}
    origin = (f"{src['table']} snapshot {src['snapshot_id']} ({meta['source_lake']})"
              if src.get("format") == "iceberg" else meta["source_lake"])
    lines = [f"prepare ok: run {meta['run_id']} from {origin} in {meta['seconds']:.1f}s"]
    lines.append(f"  reviews read {rows['read']}   clean {rows['clean']}   kept {rows['kept']}"
                 f"   ({'balanced' if meta['balance'] else 'not balanced'}, seed {meta['seed']})")
    why = ", ".join(f"{k} {v}" for k, v in dropped.items() if v)
    lines.append(f"  dropped      {why or 'nothing'}")
    lines.append(f"  {'split':<11}{'reviews':>9}  labels 0..4 (star_rating 1..5)      files")
    for name, s in meta["splits"].items():
        labels = " ".join(f"{s['labels'][str(i)]:>6}" for i in range(meta["num_labels"]))
        lines.append(f"  {name:<11}{s['count']:>9}  {labels}   {len(s['files']):>5}")
    t = meta["tokenizer"]
    lines.append(f"  tokenizer    {t['kind']}, vocabulary {t['vocab_size']} "
                 f"(sha256 {t['vocab_sha256'][:12]}){'' if not t['source'] else ' from ' + t['source']}")
    p = meta["token_lengths"]
    if p.get("percentiles"):
        pct = " ".join(f"p{k}={v}" for k, v in
                       sorted(p["percentiles"].items(), key=lambda kv: int(kv[0])))
        sample = p.get("sample") or {}
        of = f" (a sample of {sample['rows']:,} of {sample['of']:,} reviews)" \
            if sample.get("rows", 0) < sample.get("of", 0) else ""
        lines.append(f"  tokens       {pct}{of}")
        note = "" if p["suggested_max_seq_length"] == meta["max_seq_length"] else \
            f" (the book's rule suggests {p['suggested_max_seq_length']})"
        lines.append(f"  max_seq_length {meta['max_seq_length']}{note}: "
                     f"{100 * p['truncated_fraction']:.1f}% of reviews truncated")
    lines.append(f"  written      train/ validation/ test/ ({meta['format']}, {meta['compression']}, "
                 f"{meta['writer']} writer), parquet/, tokenizer/, _meta.json")
    return "\n".join(lines)
