"""Numbers behind the report: the confusion matrix, per-class accuracy, which test images are wrong."""

from __future__ import annotations

import numpy as np
import torch

def confusion_matrix(labels: torch.Tensor, predictions: torch.Tensor, num_classes: int) -> np.ndarray:
    """counts[true, predicted]."""
    flat = labels.long() * num_classes + predictions.long()
    return torch.bincount(flat, minlength=num_classes * num_classes).view(num_classes, num_classes).numpy()


def per_class_accuracy(confusion: np.ndarray) -> list[dict]:
    totals = confusion.sum(1)
    return [{"class_index": i, "correct": int(confusion[i, i]), "total": int(totals[i]),
             "accuracy": float(confusion[i, i] / totals[i]) if totals[i] else float("nan")}
            for i in range(len(confusion))]


def misclassified(logits: torch.Tensor, labels: torch.Tensor, count: int, order: str = "index") -> list[dict]:
    """The first `count` wrongly classified images: by test index, or most confident mistakes first
    (ties broken by index). Each: index, true, predicted, confidence (softmax of the prediction)."""
    probabilities = torch.softmax(logits.float(), 1)
    confidence, predicted = probabilities.max(1)
    wrong = torch.nonzero(predicted != labels).flatten()
    if order == "confidence":
        # stable sort of the index-ordered list keeps ties in index order
        wrong = wrong[torch.sort(-confidence[wrong], stable=True).indices]
    elif order != "index":
        raise ValueError(f"unknown order {order!r}")
    wrong = wrong[:count]
    return [{"index": int(i), "true": int(labels[i]), "predicted": int(predicted[i]),
             "confidence": float(confidence[i])} for i in wrong]
