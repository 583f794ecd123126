"""Evaluate a classifier on a labelled split: accuracy, per-class precision/recall/F1, confusion."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset


@torch.inference_mode()
def predict_labels(
    net: nn.Module,
    dataset: Dataset[dict[str, Any]],
    mean: Sequence[float],
    std: Sequence[float],
    device: str = "cpu",
    batch_size: int = 256,
    num_workers: int = 0,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Predicted and true labels of every sample.

    Args:
        net: classifier returning (batch, classes) logits.
        dataset: samples ``{"image": (bands, rows, cols) in rendered units, "label": int}``.
        mean: per-band mean, rendered units.
        std: per-band standard deviation, rendered units.
        device: torch device.
        batch_size: images per forward pass.
        num_workers: DataLoader workers.

    Returns:
        (y_true, y_pred), each (samples,) int64.
    """
    net = net.eval().to(device)
    m = torch.tensor(mean, device=device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=device).view(1, -1, 1, 1)
    autocast = device == "cuda" or _cpu_bf16()
    true: list[torch.Tensor] = []
    pred: list[torch.Tensor] = []
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
    for batch in loader:
        x = ((batch["image"].to(device).float() - m) / s).contiguous(
            memory_format=torch.channels_last
        )
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=autocast):
            logits = net(x)
        pred.append(logits.float().argmax(1).cpu())
        true.append(torch.as_tensor(batch["label"]).cpu())
    return torch.cat(true).numpy().astype(np.int64), torch.cat(pred).numpy().astype(np.int64)


def _cpu_bf16() -> bool:
    from ..cam import cpu_supports_bf16

    return cpu_supports_bf16()


def classification_report(
    y_true: npt.NDArray[np.int64], y_pred: npt.NDArray[np.int64], classes: Sequence[str]
) -> dict[str, Any]:
    """Overall accuracy, per-class precision/recall/F1 and the confusion matrix.

    Args:
        y_true: (samples,) true class indices.
        y_pred: (samples,) predicted class indices.
        classes: class names, index order.

    Returns:
        JSON-ready dict; ``confusion[i][j]`` counts true class i predicted as j.
    """
    n = len(classes)
    confusion = np.bincount(y_true * n + y_pred, minlength=n * n).reshape(n, n)
    tp = np.diag(confusion).astype(np.float64)
    predicted = confusion.sum(0)
    actual = confusion.sum(1)
    precision = np.divide(tp, predicted, out=np.zeros(n), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros(n), where=actual > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(n), where=denom > 0)
    return {
        "n": len(y_true),
        "overall_accuracy": round(float(tp.sum() / max(1, len(y_true))), 5),
        "macro_f1": round(float(f1.mean()), 5),
        "per_class": {
            c: {
                "precision": round(float(precision[i]), 5),
                "recall": round(float(recall[i]), 5),
                "f1": round(float(f1[i]), 5),
                "support": int(actual[i]),
            }
            for i, c in enumerate(classes)
        },
        "classes": list(classes),
        "confusion": confusion.tolist(),
    }


def evaluate_net(
    net: nn.Module,
    dataset: Dataset[dict[str, Any]],
    classes: Sequence[str],
    mean: Sequence[float],
    std: Sequence[float],
    device: str = "cpu",
    batch_size: int = 256,
) -> dict[str, Any]:
    """Predict a dataset and report (see :func:`classification_report`)."""
    y_true, y_pred = predict_labels(net, dataset, mean, std, device=device, batch_size=batch_size)
    return classification_report(y_true, y_pred, classes)


def write_report(report: dict[str, Any], json_path: Path, png_path: Path | None) -> None:
    """Write the report as JSON and the confusion matrix as a PNG, each atomically."""
    json_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = json_path.with_name(f".{json_path.name}.tmp")
    tmp.write_text(json.dumps(report, indent=2))
    os.replace(tmp, json_path)
    if png_path is not None:
        plot_confusion(report, png_path)


def plot_confusion(report: dict[str, Any], path: Path) -> None:
    """Row-normalised confusion matrix with counts, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conf = np.asarray(report["confusion"], dtype=np.float64)
    classes = report["classes"]
    rows = conf / np.maximum(conf.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(8, 7), dpi=110)
    ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            if conf[i, j]:
                color = "white" if rows[i, j] > 0.5 else "black"
                ax.text(
                    j, i, str(int(conf[i, j])), ha="center", va="center", fontsize=7, color=color
                )
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(
        f"overall accuracy {report['overall_accuracy']:.4f}, macro F1 {report['macro_f1']:.4f}, "
        f"n={report['n']}",
        fontsize=9,
    )
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)
