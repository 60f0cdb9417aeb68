"""The tokenizer of the prepare stage: a saved Hugging Face tokenizer, or a trained WordPiece.

Two sources, one result (a ``DistilBertTokenizerFast``, saved to ``FEATURES/tokenizer/``):

* ``--tokenizer DIR``: a directory written by ``save_pretrained`` (``tokenizer.json`` and/or
  ``vocab.txt``; e.g. a staged ``distilbert-base-uncased``), on local disk or any Hadoop
  filesystem (``s3a://``, ``hdfs://``): remote directories are copied to a local temporary
  directory first. Nothing is downloaded from a model hub.
* default (offline): an uncased WordPiece vocabulary trained with ``tokenizers`` on a bounded
  sample of the training split, with BERT's normalizer, pre-tokenizer and ``[CLS] ... [SEP]``
  template, so that the result loads with ``DistilBertTokenizerFast.from_pretrained``.

Executors never import ``transformers``: they get the backend tokenizer's JSON (a broadcast)
and build a ``tokenizers.Tokenizer`` from it (see :mod:`.encode`).

A trained vocabulary is not bit-reproducible: ``tokenizers``' trainer breaks ties between
equally frequent merges in hash-map order, which changes from process to process. The splits
do not depend on it; to keep token ids identical across runs, pass the ``tokenizer/``
directory of an earlier run with ``--tokenizer``. ``_meta.json`` records the vocabulary's
SHA-256 either way.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Any, Iterable

from ..errors import UserError
from ..fs import HadoopFS, is_remote

log = logging.getLogger(__name__)

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
DEFAULT_VOCAB_SIZE = 30522   # distilbert-base-uncased
MODEL_MAX_LENGTH = 512       # DistilBERT's position embeddings


@dataclass
class TokenizerInfo:
    """What the job and ``_meta.json`` need to know about the tokenizer."""

    kind: str                      # "trained-wordpiece" | "pretrained"
    source: str | None             # the --tokenizer directory, or None when trained
    backend_json: str              # tokenizers.Tokenizer JSON (what executors load)
    vocab_size: int
    vocab_sha256: str
    special_tokens: dict[str, int]
    lowercase: bool | None
    trained_on: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Identity of the backend tokenizer (executors cache it under this key)."""
        return hashlib.sha256(self.backend_json.encode("utf-8")).hexdigest()

    @property
    def pad_id(self) -> int:
        return self.special_tokens["pad"]

    @property
    def sep_id(self) -> int:
        return self.special_tokens["sep"]

    def meta(self, path: str = "tokenizer") -> dict[str, Any]:
        out = {"path": path, "kind": self.kind, "source": self.source,
               "vocab_size": self.vocab_size, "vocab_sha256": self.vocab_sha256,
               "special_tokens": dict(self.special_tokens), "lowercase": self.lowercase}
        if self.trained_on:
            out["trained_on"] = dict(self.trained_on)
        return out


def _fast_class():
    # transformers is imported on the driver only, and only here (it is slow to import).
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    from transformers import DistilBertTokenizerFast
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    return DistilBertTokenizerFast


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def load_pretrained(fs: HadoopFS, source: str):
    """A saved tokenizer directory (local or remote) as a DistilBertTokenizerFast."""
    cls = _fast_class()
    local = source[len("file://"):] if source.startswith("file://") else source
    tmp = None
    try:
        if is_remote(source):
            if not fs.is_dir(source):
                raise UserError(f"tokenizer directory not found: {source}")
            tmp = tempfile.mkdtemp(prefix="reviewlake-tokenizer-")
            fs.copy_to_local(source, tmp)
            local = os.path.join(tmp, source.rstrip("/").rsplit("/", 1)[-1])
        elif not os.path.isdir(os.path.expanduser(local)):
            raise UserError(f"tokenizer directory not found: {source} (give a directory written "
                            f"by save_pretrained, e.g. a staged distilbert-base-uncased)")
        local = os.path.expanduser(local)
        names = set(os.listdir(local))
        if not names & {"tokenizer.json", "vocab.txt"}:
            raise UserError(f"{source} has neither tokenizer.json nor vocab.txt: not a saved "
                            f"Hugging Face tokenizer directory")
        try:
            return cls.from_pretrained(local, local_files_only=True)
        except Exception as exc:  # malformed files, unknown formats
            raise UserError(f"cannot load the tokenizer in {source}: {_first_line(exc)}") from None
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def train_wordpiece(texts: Iterable[str], vocab_size: int = DEFAULT_VOCAB_SIZE,
                    lowercase: bool = True, min_frequency: int = 2):
    """An uncased (by default) BERT WordPiece tokenizer trained on ``texts``."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers import trainers

    if vocab_size < len(SPECIAL_TOKENS) + 1:
        raise UserError(f"--vocab-size must be larger than {len(SPECIAL_TOKENS)}, got {vocab_size}")
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                strip_accents=None, lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                        special_tokens=list(SPECIAL_TOKENS), limit_alphabet=1000,
                                        continuing_subword_prefix="##", show_progress=False)
    tok.train_from_iterator(texts, trainer)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.BertProcessing(("[SEP]", sep_id), ("[CLS]", cls_id))
    tok.decoder = decoders.WordPiece(prefix="##")
    fast_cls = _fast_class()
    return fast_cls(tokenizer_object=tok, do_lower_case=lowercase, unk_token="[UNK]",
                    sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]",
                    mask_token="[MASK]", model_max_length=MODEL_MAX_LENGTH)


def check_bert_like(tok, max_seq_length: int, source: str) -> None:
    """The encoder truncates as BERT does: one [CLS] first, one [SEP] last."""
    if tok.cls_token_id is None or tok.sep_token_id is None or tok.pad_token_id is None:
        raise UserError(f"the tokenizer in {source} has no [CLS]/[SEP]/[PAD] tokens; prepare "
                        f"needs a BERT-style (WordPiece) tokenizer such as distilbert-base-uncased")
    probe = tok("reviewlake probe")["input_ids"]
    if (tok.num_special_tokens_to_add(pair=False) != 2 or probe[0] != tok.cls_token_id
            or probe[-1] != tok.sep_token_id):
        raise UserError(f"the tokenizer in {source} does not wrap a text as [CLS] ... [SEP]; "
                        f"prepare needs a BERT-style tokenizer such as distilbert-base-uncased")
    limit = tok.model_max_length if tok.model_max_length and tok.model_max_length < 10**6 \
        else MODEL_MAX_LENGTH
    if max_seq_length > limit:
        raise UserError(f"--max-seq-length {max_seq_length} is longer than the tokenizer's "
                        f"model_max_length {limit}")


def vocab_sha256(tok) -> str:
    vocab = tok.get_vocab()
    ordered = sorted(vocab.items(), key=lambda kv: kv[1])
    text = "".join(f"{token}\n" for token, _ in ordered)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def info(tok, kind: str, source: str | None, trained_on: dict | None = None) -> TokenizerInfo:
    backend = tok.backend_tokenizer
    lowercase = None
    normalizer = getattr(backend, "normalizer", None)
    if normalizer is not None and hasattr(normalizer, "lowercase"):
        lowercase = bool(normalizer.lowercase)
    specials = {"pad": tok.pad_token_id, "unk": tok.unk_token_id, "cls": tok.cls_token_id,
                "sep": tok.sep_token_id, "mask": tok.mask_token_id}
    return TokenizerInfo(kind=kind, source=source, backend_json=backend.to_str(),
                         vocab_size=len(tok.get_vocab()), vocab_sha256=vocab_sha256(tok),
                         special_tokens={k: v for k, v in specials.items() if v is not None},
                         lowercase=lowercase, trained_on=dict(trained_on or {}))


def save(tok, fs: HadoopFS, dest: str) -> None:
    """save_pretrained to dest (local, or through a local temporary directory when remote)."""
    if not is_remote(dest):
        local = dest[len("file://"):] if dest.startswith("file://") else dest
        tok.save_pretrained(local)
        return
    tmp = tempfile.mkdtemp(prefix="reviewlake-tokenizer-")
    try:
        tok.save_pretrained(tmp)
        fs.mkdirs(dest)
        for name in sorted(os.listdir(tmp)):
            fs.copy_from_local(os.path.join(tmp, name), dest.rstrip("/") + "/" + name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
