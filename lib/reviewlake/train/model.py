"""The classifier: DistilBERT (transformers, TensorFlow) with the book's head.

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
                                max_position_embeddings=positions)
    if spec.model == "distilbert-base":
        return DistilBertConfig(vocab_size=vocab_size, max_position_embeddings=positions)
    raise ValueError(spec.model)


def load_distilbert(spec: TrainSpec, vocab_size: int, max_seq_length: int) -> TFDistilBertModel:
    if spec.model in ("tiny", "distilbert-base"):
        return TFDistilBertModel(distilbert_config(spec, vocab_size, max_seq_length))
    path = spec.model
    if not os.path.isdir(path):
        raise UserError(f"--model must be tiny, distilbert-base or a pretrained directory; "
                        f"{path} is not a directory")
    if not any(os.path.exists(os.path.join(path, f)) for f in ("tf_model.h5", "model.safetensors")):
        raise UserError(f"{path} has no TensorFlow weights (tf_model.h5 or model.safetensors); "
                        "save the model with save_pretrained from TFDistilBertModel")
    model = TFDistilBertModel.from_pretrained(path)
    if model.config.vocab_size < vocab_size:
        raise UserError(f"the tokenizer has {vocab_size} tokens but {path} embeds "
                        f"{model.config.vocab_size}: prepare with --tokenizer {path}")
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
