"""Predicting star ratings with a trained model directory (saved_model + tokenizer)."""
from __future__ import annotations

import json
import os

from ..errors import UserError


class Predictor:
    def __init__(self, model_dir: str):
        for part in ("saved_model", "tokenizer", "model_config.json"):
            if not os.path.exists(os.path.join(model_dir, part)):
                raise UserError(f"{model_dir} is not a trained model ({part} missing); "
                                "run reviewlake train first")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        _ = tf.keras.layers
        from transformers import DistilBertTokenizerFast

        with open(os.path.join(model_dir, "model_config.json"), encoding="utf-8") as fh:
            self.config = json.load(fh)
        self.length = int(self.config["max_seq_length"])
        self.labels = self.config["labels"]
        self.tokenizer = DistilBertTokenizerFast.from_pretrained(os.path.join(model_dir, "tokenizer"))
        self._serve = tf.saved_model.load(os.path.join(model_dir, "saved_model")) \
            .signatures["serving_default"]
        self._tf = tf

    def probabilities(self, texts: list[str]):
        enc = self.tokenizer(list(texts), max_length=self.length, padding="max_length",
                             truncation=True, return_tensors="np")
        tf = self._tf
        out = self._serve(input_ids=tf.constant(enc["input_ids"], tf.int32),
                          input_mask=tf.constant(enc["attention_mask"], tf.int32))
        return out["probabilities"].numpy()

    def predict(self, texts: list[str]) -> list[dict]:
        probs = self.probabilities(texts)
        rows = []
        for text, p in zip(texts, probs):
            best = int(p.argmax())
            rows.append({"text": text, "star_rating": int(self.labels[best]),
                         "probabilities": {label: round(float(v), 4)
                                           for label, v in zip(self.labels, p)}})
        return rows
