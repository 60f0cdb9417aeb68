"""Classification metrics without extra dependencies: confusion matrix, per-class precision,
recall and F1, a text report and a PNG of the matrix."""
from __future__ import annotations

import numpy as np


def confusion_matrix(y_true, y_pred, num_labels: int) -> np.ndarray:
    cm = np.zeros((num_labels, num_labels), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return cm


def per_class(cm: np.ndarray, names: list[str]) -> dict:
    tp = np.diag(cm).astype(float)
    support = cm.sum(axis=1).astype(float)
    predicted = cm.sum(axis=0).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    classes = {name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
               for name, p, r, f, s in zip(names, precision, recall, f1, support)}
    total = support.sum()
    weights = support / total if total else np.zeros_like(support)
    return {
        "classes": classes,
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "macro_avg": {"precision": float(precision.mean()), "recall": float(recall.mean()),
                      "f1": float(f1.mean()), "support": int(total)},
        "weighted_avg": {"precision": float((precision * weights).sum()),
                         "recall": float((recall * weights).sum()),
                         "f1": float((f1 * weights).sum()), "support": int(total)},
    }


def report_text(stats: dict) -> str:
    lines = [f"{'':>14} {'precision':>9} {'recall':>9} {'f1-score':>9} {'support':>9}", ""]
    for name, c in stats["classes"].items():
        lines.append(f"{name:>14} {c['precision']:9.3f} {c['recall']:9.3f} {c['f1']:9.3f} "
                     f"{c['support']:9d}")
    total = stats["macro_avg"]["support"]
    lines += ["", f"{'accuracy':>14} {'':9} {'':9} {stats['accuracy']:9.3f} {total:9d}"]
    for key in ("macro_avg", "weighted_avg"):
        c = stats[key]
        lines.append(f"{key.replace('_', ' '):>14} {c['precision']:9.3f} {c['recall']:9.3f} "
                     f"{c['f1']:9.3f} {c['support']:9d}")
    return "\n".join(lines) + "\n"


def plot_confusion_matrix(cm: np.ndarray, names: list[str], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5))
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted star rating")
    ax.set_ylabel("true star rating")
    ax.set_title(title)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center",
                    color="white" if norm[i, j] > 0.5 else "black", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
