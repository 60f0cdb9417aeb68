"""The classifier: DistilBERT (transformers, TensorFlow) with the book's head.

The encoder is DistilBERT built from a config (``tiny``, ``distilbert-base``: random init) or
any BERT-family encoder directory (``--model DIR``: DistilBERT, BERT, MiniLM; TensorFlow
layout, or PyTorch layout as safetensors or pytorch_model.bin, loaded without torch; with
``--init random`` the same architecture from its config.json, freshly initialised, to
measure what the pretrained weights bring).

input_ids, input_mask -> DistilBERT -> BiLSTM -> global max pool -> dense(relu) -> dropout ->
dense(num_labels, softmax). The output is a probability distribution, so the loss is sparse
categorical cross-entropy on probabilities (from_logits=False); the reference code's
from_logits=True on a softmax output was a bug.
"""
from __future__ import annotations

import os

import tensorflow as tf

# Bind tf.keras to TensorFlow's own Keras 2 before transformers looks for tf_keras. The 4.x line
# is pinned on purpose (5.x dropped TensorFlow), so its deprecation notice is noise on every rank.
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
_ = tf.keras.layers
from transformers import DistilBertConfig, TFDistilBertModel  # noqa: E402

from ..errors import UserError  # noqa: E402
from .spec import TrainSpec  # noqa: E402


def distilbert_config(spec: TrainSpec, vocab_size: int, max_seq_length: int) -> DistilBertConfig:
    positions = max(512, max_seq_length)
    if spec.model == "tiny":
        t = spec.tiny
        return DistilBertConfig(vocab_size=vocab_size, dim=int(t["dim"]), n_layers=int(t["n_layers"]),
                                n_heads=int(t["n_heads"]), hidden_dim=int(t["hidden_dim"]),
                                dropout=float(t.get("dropout", 0.1)),
                                attention_dropout=float(t.get("attention_dropout", 0.1)),
                                max_position_embeddings=positions)
    if spec.model == "distilbert-base":
        return DistilBertConfig(vocab_size=vocab_size, max_position_embeddings=positions)
    raise ValueError(spec.model)


ENCODER_TYPES = ("distilbert", "bert")   # BERT-family config.json model_type values


def load_distilbert(spec: TrainSpec, vocab_size: int, max_seq_length: int):
    """The encoder: DistilBERT from a config (random init), or a pretrained directory (its
    weights, or with ``init: random`` its architecture freshly initialised)."""
    if spec.model in ("tiny", "distilbert-base"):
        return TFDistilBertModel(distilbert_config(spec, vocab_size, max_seq_length))
    if spec.init == "random":
        model = random_init_encoder(spec.model, spec.seed)
    else:
        model = load_pretrained_encoder(spec.model)
    if model.config.vocab_size < vocab_size:
        raise UserError(f"the tokenizer has {vocab_size} tokens but {spec.model} embeds "
                        f"{model.config.vocab_size}: prepare with --tokenizer {spec.model}")
    return model


def load_pretrained_encoder(path: str):
    """A Hugging Face BERT-family encoder directory (DistilBERT, BERT, MiniLM, ...) as a
    TensorFlow model, without torch and without a model hub.

    ``tf_model.h5`` (TensorFlow layout) loads with ``from_pretrained``. The PyTorch layout's
    state dict, ``model.safetensors`` or else ``pytorch_model.bin`` (torch.save's zip format,
    read by :mod:`.torch_bin`), is read as numpy arrays and assigned to a model built from
    ``config.json``, weight by weight (transformers' PyTorch-to-TF name mapping); every weight
    of the TF model must come from the file. (``TFAutoModel.from_pretrained`` on such a
    directory fails with transformers 4.57 and safetensors 0.8, and its fallback needs torch.)
    """
    from transformers import TFAutoModel

    config = _encoder_config(path, "save the encoder with save_pretrained")
    if os.path.isfile(os.path.join(path, "tf_model.h5")):
        return TFAutoModel.from_pretrained(path, config=config)
    weights, state = _read_state_dict(path)
    return _from_state_dict(config, state, weights)


def _encoder_config(path: str, no_config_hint: str):
    """The transformers config of a BERT-family encoder directory, or a one-line UserError
    (not a directory, no or invalid config.json, another model type)."""
    import json

    from transformers import AutoConfig

    if not os.path.isdir(path):
        raise UserError(f"--model must be tiny, distilbert-base or a pretrained directory; "
                        f"{path} is not a directory")
    config_file = os.path.join(path, "config.json")
    if not os.path.isfile(config_file):
        raise UserError(f"{path} has no config.json: {no_config_hint}")
    try:
        with open(config_file, encoding="utf-8") as fh:
            model_type = json.load(fh).get("model_type")
    except ValueError as exc:
        raise UserError(f"{config_file} is not valid JSON: {exc}") from None
    if model_type not in ENCODER_TYPES:
        raise UserError(f"{path} holds a {model_type!r} model; --model takes BERT-family "
                        f"encoders ({', '.join(ENCODER_TYPES)})")
    return AutoConfig.from_pretrained(path)


def _read_state_dict(path: str) -> tuple[str, dict]:
    """The PyTorch layout's state dict (name -> numpy array) and the file it came from."""
    safetensors_file = os.path.join(path, "model.safetensors")
    if os.path.isfile(safetensors_file):
        import safetensors.numpy

        return safetensors_file, safetensors.numpy.load_file(safetensors_file)
    bin_file = os.path.join(path, "pytorch_model.bin")
    if os.path.isfile(bin_file):
        from .torch_bin import load_state_dict

        return bin_file, load_state_dict(bin_file)
    raise UserError(f"{path} has no weights; --model needs tf_model.h5, model.safetensors or "
                    f"pytorch_model.bin")


def _from_state_dict(config, state: dict, source_name: str):
    """A TF model built from ``config`` with every weight taken from a PyTorch state dict."""
    from transformers import TFAutoModel
    from transformers.modeling_tf_pytorch_utils import load_pytorch_state_dict_in_tf2_model

    model = TFAutoModel.from_config(config)
    model(model.dummy_inputs, training=False)          # create the variables
    try:
        model, info = load_pytorch_state_dict_in_tf2_model(model, state, allow_missing_keys=True,
                                                           output_loading_info=True)
    except (ValueError, AssertionError, tf.errors.InvalidArgumentError) as e:  # a shape
        detail = " ".join(str(e).split())
        raise UserError(f"{source_name} does not fit its config.json: a weight of another "
                        f"shape ({detail:.200})") from None
    if info.get("missing_keys") or info.get("mismatched_keys"):
        missing = list(info.get("missing_keys") or []) + \
            [str(k) for k in info.get("mismatched_keys") or []]
        raise UserError(f"{source_name} does not fit its config.json: {len(missing)} weights "
                        f"missing or of another shape (first: {missing[0]})")
    return model


def random_init_encoder(path: str, seed: int):
    """The encoder of a BERT-family directory with fresh weights: the model its
    ``config.json`` describes, initialised as transformers initialises a new model
    (truncated normal of ``initializer_range``, LayerNorm 1 and 0, zero biases), from ``seed``
    (the same seed, the same weights). Nothing is read but ``config.json``: the weights file
    need not be there."""
    from transformers import TFAutoModel

    config = _encoder_config(path, "--init random builds the architecture it describes")
    tf.keras.utils.set_random_seed(seed)   # the initialisers draw from the global generator
    model = TFAutoModel.from_config(config)
    model(model.dummy_inputs, training=False)          # create the variables
    return model


def build_model(spec: TrainSpec, vocab_size: int, max_seq_length: int,
                num_labels: int = 5) -> tf.keras.Model:
    input_ids = tf.keras.Input((max_seq_length,), dtype=tf.int32, name="input_ids")
    input_mask = tf.keras.Input((max_seq_length,), dtype=tf.int32, name="input_mask")
    distilbert = load_distilbert(spec, vocab_size, max_seq_length)
    if spec.freeze_bert:
        distilbert.trainable = False
    hidden = distilbert(input_ids=input_ids, attention_mask=input_mask)[0]
    x = tf.keras.layers.Bidirectional(
        tf.keras.layers.LSTM(spec.lstm_units, return_sequences=True, dropout=spec.dropout))(hidden)
    x = tf.keras.layers.GlobalMaxPool1D()(x)
    x = tf.keras.layers.Dense(spec.dense_units, activation="relu")(x)
    x = tf.keras.layers.Dropout(spec.dropout)(x)
    # float32 probabilities even under mixed precision.
    out = tf.keras.layers.Dense(num_labels, activation="softmax", dtype="float32",
                                name="star_rating")(x)
    return tf.keras.Model(inputs={"input_ids": input_ids, "input_mask": input_mask},
                          outputs=out, name="review_classifier")


def loss() -> tf.keras.losses.Loss:
    return tf.keras.losses.SparseCategoricalCrossentropy(from_logits=False)
