"""Test-set evaluation of a classifier: accuracy, macro F1, per-class accuracy, confusion matrix, plots."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)


def classification_metrics(y_true, y_pred, class_names: list[str]) -> dict:
    """Accuracy, macro F1, per-class accuracy (recall) and the confusion matrix (rows: true)."""
    from sklearn.metrics import confusion_matrix, f1_score

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    k = len(class_names)
    cm = confusion_matrix(y_true, y_pred, labels=list(range(k))) if len(y_true) else np.zeros((k, k), int)
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)
    return {
        "accuracy": float((y_true == y_pred).mean()) if len(y_true) else float("nan"),
        "macro_f1": float(f1_score(y_true, y_pred, labels=list(range(k)), average="macro",
                                   zero_division=0)) if len(y_true) else float("nan"),
        "per_class": pd.DataFrame({"class": class_names, "support": support.astype(int),
                                   "accuracy": per_class}),
        "confusion": cm,
        "n": int(len(y_true)),
        "chance": float(support.max() / support.sum()) if support.sum() else float("nan"),
    }


def plot_confusion(cm: np.ndarray, class_names: list[str], path: Path, title: str = "") -> Path:
    """Row-normalised confusion matrix with class names and counts; sized to stay readable."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(class_names)
    side = min(30.0, max(4.5, 0.45 * k + 2.5))
    fig, ax = plt.subplots(figsize=(side + 1.0, side))
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    fs = max(5, min(10, int(160 / max(k, 1))))
    ax.set_xticklabels(class_names, rotation=60, ha="right", fontsize=fs)
    ax.set_yticklabels(class_names, fontsize=fs)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 30:
        for i in range(k):
            for j in range(k):
                if cm[i, j]:
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=fs,
                            color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    ax.set_title(title or "confusion matrix (test)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_curves(history: pd.DataFrame, path: Path, title: str = "") -> Path:
    """Training/validation accuracy (left) and loss (right) per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    x = history["epoch_index"] if "epoch_index" in history else history["epoch"]
    for col, style in (("train_acc", "--"), ("val_acc", "-")):
        if col in history:
            a1.plot(x, history[col], style, marker="o", ms=3, label=col.replace("_", " "))
    for col, style in (("train_loss", "--"), ("val_loss", "-")):
        if col in history:
            a2.plot(x, history[col], style, marker="o", ms=3, label=col.replace("_", " "))
    if "stage" in history and history["stage"].nunique() > 1:
        for a in (a1, a2):
            for b in x[history["stage"].ne(history["stage"].shift()) & (x > x.min())]:
                a.axvline(b - 0.5, color="grey", lw=0.8, ls=":")
    a1.set_xlabel("epoch")
    a1.set_ylabel("accuracy")
    a1.set_ylim(0, 1.02)
    a2.set_xlabel("epoch")
    a2.set_ylabel("loss")
    for a in (a1, a2):
        a.grid(alpha=0.3)
        a.legend()
    fig.suptitle(title or "learning curves")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_evaluation(run_dir: Path, class_names: list[str], test: pd.DataFrame, probs: np.ndarray,
                     extra: dict) -> list[Path]:
    """Write metrics.json, per_class.csv, confusion_matrix.csv/.png and test_predictions.parquet."""
    y_true = test["target"].to_numpy()
    y_pred = probs.argmax(1) if len(probs) else np.zeros(0, int)
    m = classification_metrics(y_true, y_pred, class_names)
    written = []
    pred = test[["path", "label"]].copy()
    pred["pred"] = [class_names[i] for i in y_pred]
    pred["prob"] = probs.max(1) if len(probs) else []
    pred["correct"] = pred["pred"] == pred["label"]
    pred.to_parquet(run_dir / "test_predictions.parquet", index=False)
    written.append(run_dir / "test_predictions.parquet")
    m["per_class"].to_csv(run_dir / "per_class.csv", index=False)
    written.append(run_dir / "per_class.csv")
    cm = pd.DataFrame(m["confusion"], index=class_names, columns=class_names)
    cm.index.name = "true\\predicted"
    cm.to_csv(run_dir / "confusion_matrix.csv")
    written.append(run_dir / "confusion_matrix.csv")
    written.append(plot_confusion(m["confusion"], class_names, run_dir / "confusion_matrix.png",
                                  f"test accuracy {m['accuracy']:.3f}, macro F1 {m['macro_f1']:.3f}"))
    metrics = {
        "test_accuracy": m["accuracy"], "test_macro_f1": m["macro_f1"], "n_test": m["n"],
        "majority_baseline": m["chance"], "num_classes": len(class_names), "class_names": class_names,
        "per_class_accuracy": dict(zip(class_names, [None if np.isnan(v) else float(v)
                                                     for v in m["per_class"]["accuracy"]], strict=True)),
        **extra,
    }
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1, default=float) + "\n")
    written.append(run_dir / "metrics.json")
    return written
